"""A run that other code writes (TensorBoard's writer, StyleGAN's loop), read as `open_run` hands out ganterm's.

`ForeignRun` offers what `GantermRun` offers, over a format reader (a
`LogReader`): the reader's raw tags go under ganterm's roles (roles.py), so the
panels, the loss family and the health checks apply. Such a run is read-only:
nothing ganterm sends reaches its writer, so it takes no commands. Its state
comes from file times, and its alerts are the health checks ganterm runs over
its numbers: no writer records any, so the viewer raises them.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganterm.config import HealthConfig
from ganterm.families import SERIES, family_named
from ganterm.health import HealthMonitor
from ganterm.run.settings import shown_config, shown_settings
from ganterm.sources.columns import (
    Columns,
    columns_in_step_order,
    distinct,
    history_table,
    merge_columns,
    newest_step,
)
from ganterm.sources.follow import RunUpdate
from ganterm.sources.logbatch import LogImage, LogReader, Times, merge_times
from ganterm.sources.roles import D_OUTPUTS, DReadings, Roles, TagNames, family_from, family_reason, guess_family

LIVE_SECONDS = 120.0  # a file changed this recently: its writer is live (StyleGAN writes once a tick, minutes apart)
WRITERS = {"tensorboard": "TensorBoard's writer", "stylegan": "StyleGAN's training loop"}
# images one step stands for, where the format says: StyleGAN's step is the kimg (its readers make it so)
IMAGES_PER_STEP = {"stylegan": 1000}
# what the health checks read: every other column stays out of the monitor's rows
HEALTH_INPUTS = frozenset({"loss_d", "loss_g", "loss_d_real", "loss_d_fake", *D_OUTPUTS, "grad_norm_g", "diversity",
                           "modes_covered", "modes_total", "hq_share", "classifier_confidence", "class_coverage",
                           "nonfinite", *SERIES})  # fmt: skip
MERGE_PIECES = 256  # pieces of columns kept apart before they are merged (a minute of polls, on a live run)
ALERT_ROWS_A_POLL = 2_000  # steps the health checks read in one poll: about 0.1 s (100 µs a step)
WAIT_SECONDS = 0.01  # between polls of a reader whose history is still being parsed
ReaderFactory = Callable[[Path], LogReader]


def cache_root() -> Path:
    """Where images that came as bytes (image summaries) are written once, as files the samples panel reads."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganterm" / "images"


@dataclass
class Collected:
    """Everything a reader handed over, in ganterm's names: what `ForeignRun` answers from."""

    columns: Columns = field(default_factory=dict)
    images: list[LogImage] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # non-scalar records passed over, by kind
    bad_records: int = 0
    alerts: list[dict[str, Any]] | None = None  # the health checks' alerts, once asked for
    stamp: tuple[tuple[str, int, int], ...] = ()  # the folder's files when read (files_stamp)


class ForeignRun:
    """One run another tool writes: status from file times, settings, history, alerts, samples, checkpoints."""

    read_only = True
    controls: tuple[str, ...] = ()  # nothing ganterm sends reaches the writer

    def __init__(
        self, folder: Path, reader_factory: ReaderFactory, kind: str, roles: Roles | None = None, name: str = ""
    ) -> None:
        self.folder = Path(folder)
        self.reader_factory = reader_factory
        self.kind = kind
        self.roles = roles or Roles()
        self._name = name
        self._cached: Collected | None = None

    @property
    def name(self) -> str:
        """The folder's name; for a run found under a logdir, its path there (`exp1/seed1`), as TensorBoard names it."""
        return self._name or self.folder.name

    @property
    def path(self) -> Path:
        return self.folder

    @property
    def writer(self) -> str:
        return WRITERS.get(self.kind, self.kind)

    def __repr__(self) -> str:
        return f"<{self.kind} run {self.name!r} at {self.path}>"

    # ----- reading --------------------------------------------------------------------------------

    def _collected(self) -> Collected:
        """The whole run as its files stand; read again only when a file changed since the last call."""
        stamp = files_stamp(self.folder)
        if self._cached is None or self._cached.stamp != stamp:
            self._cached = collect(self.reader_factory(self.folder), TagNames(self.roles))
            self._cached.stamp = stamp
        return self._cached

    def family(self) -> str:
        """The loss family its numbers are read with (roles.guess_family)."""
        return self._family(self._collected().columns)

    def _family(self, columns: Columns) -> str:
        return guess_family(self.kind, self.roles, (columns[name][1] for name in D_OUTPUTS if name in columns))

    def status(self) -> dict[str, Any]:
        """`live` while its files change (within LIVE_SECONDS), else `idle` since the last change; step, loss.

        The folder is looked at once: a StyleGAN folder holds hundreds of grids, and `runs --root` asks every run.
        """
        collected = self._collected()
        family = self._family(collected.columns)
        status = {**file_status(self, collected.stamp), "loss": family,
                  "loss_reason": family_reason(self.kind, self.roles, family)}  # fmt: skip
        if collected.skipped:
            status["skipped"] = collected.skipped  # records no scalar nor image (histograms, text), by kind: not shown
        if (step := newest_step(collected.columns)) is not None:
            status["step"] = step
        return status

    def settings(self) -> dict[str, Any]:
        """The settings as dotted keys, as listings and exports show them; secrets left out."""
        return shown_settings(self._collected().config)

    def config(self) -> dict[str, Any]:
        """The run's settings as its writer saved them (StyleGAN's training_options.json); empty when none."""
        return shown_config(self._collected().config)

    def metrics(self, names: Iterable[str] | None = None) -> Columns:
        """Each metric, in ganterm's names, as (steps, values) arrays; `names` picks some."""
        columns = self._collected().columns
        return dict(columns) if names is None else {name: columns[name] for name in names if name in columns}

    def history(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """One array per metric over every logged step, NaN where a step did not log it, and `step`."""
        return history_table(self.metrics(names))

    def latest(self, names: Collection[str]) -> dict[str, Any]:
        """Each metric's newest value, and `step` (the newest step any metric logged)."""
        columns = self._collected().columns
        latest: dict[str, Any] = {
            name: float(columns[name][1][-1]) for name in names if name in columns and len(columns[name][0])
        }
        if "step" in names and (step := newest_step(columns)) is not None:
            latest["step"] = step
        return latest

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The alerts ganterm's health checks raise over its history (no writer of this format records any).

        The checks read about 10,000 steps a second; their alerts are kept until a file of the run changes.
        """
        if kind not in (None, "alert"):
            return []
        collected = self._collected()
        if collected.alerts is None:
            monitor = HealthMonitor(HealthConfig(), own_loop=True, family=family_named(self.family()))
            collected.alerts = alert_events(monitor, collected.columns, time.time())
        return list(collected.alerts)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per step, holding the metrics that step logged (for a few thousand steps; `metrics` for more)."""
        return list(table_rows(self.history()))

    def samples(self) -> list[tuple[int, Path]]:
        """(step, image file) of each logged image, oldest first; image summaries are written to a cache once."""
        return image_files(self.folder, self._collected().images)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(kimg, path) of StyleGAN's network-snapshot-KKKKKK.pkl files, oldest first; none for TensorBoard."""
        found = []
        for path in self.folder.glob("network-snapshot-*.pkl"):
            number = path.stem.removeprefix("network-snapshot-")
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def follow(self) -> ForeignReader:
        """A reader of what the run adds from now on, poll by poll; the newest steps first, then the history."""
        return ForeignReader(self)

    def pinned_rows(self) -> ForeignRows:
        """The rows as they stand now (what an export writes)."""
        return ForeignRows(self)


def read_only_reason(run: ForeignRun) -> str:
    """Why a command cannot reach the run: one sentence for the CLI and the viewer."""
    return f"{run.name} is read-only: {run.writer} writes it, and ganterm only watches it"


def collect(reader: LogReader, names: TagNames) -> Collected:
    """Polls a fresh reader until it has handed over everything written so far, then closes it."""
    collected = Collected()
    newer: list[Columns] = []
    older: list[Columns] = []
    times: list[Times] = []
    try:
        while True:
            batch = reader.poll()
            if batch.reset:
                newer, older, times, collected = [], [], [], Collected()
            newer.append(names.columns(batch.scalars))
            older.append(names.columns(batch.history))
            times += [batch.times, batch.history_times]
            collected.images += batch.images
            if batch.config is not None:
                collected.config = batch.config
            for what, count in batch.skipped.items():
                collected.skipped[what] = collected.skipped.get(what, 0) + count
            collected.bad_records += batch.bad_records
            if not batch.more:
                break
            if batch.more and not batch:
                time.sleep(WAIT_SECONDS)  # its helpers are still parsing the history
    finally:
        reader.close()
    collected.columns = columns_in_step_order(merge_columns([piece for piece in [*reversed(older), *newer] if piece]))
    with_time(collected.columns, merge_times(times))
    return collected


def with_time(columns: Columns, times: Times) -> Columns:
    """The columns with the steps' wall times as the `t` column, as ganterm's own rows hold them (when any)."""
    if len(times[0]):
        columns["t"] = times
    return columns


def table_rows(table: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    """A history table's steps as rows, each with only the metrics its step logged."""
    names = [name for name in table if name != "step"]
    for index, step in enumerate(table["step"].tolist()):
        row: dict[str, Any] = {"step": step}
        for name in names:
            value = float(table[name][index])
            if not math.isnan(value):
                row[name] = value
        yield row


def alert_events(monitor: HealthMonitor, columns: Columns, t: float) -> list[dict[str, Any]]:
    """The monitor's alerts over these columns, in step order, as events.jsonl records (`t`: when raised)."""
    table = health_table(columns)
    return alerts_over(monitor, table, 0, len(table["step"]), t)


def health_table(columns: Columns) -> dict[str, np.ndarray]:
    """What the health checks read of these columns, as one table by step."""
    return history_table({name: columns[name] for name in HEALTH_INPUTS if name in columns})


def alerts_over(monitor: HealthMonitor, table: dict[str, np.ndarray], start: int, stop: int, t: float) -> list[dict]:
    """The monitor's alerts over rows [start, stop) of a table, fed a few rows at a time as a loop flushes them,
    so each alert lands near the step its condition began; a million rows are never held as dicts at once."""
    every = max(1, monitor.config.window // 10)
    events = []
    for first in range(start, stop, every):
        rows = list(table_rows({name: values[first : min(first + every, stop)] for name, values in table.items()}))
        events += [{"t": t, "step": alert.step, "kind": "alert", **alert.event()} for alert in monitor.update(rows)]
    return events


def after(columns: Columns, step: int | None) -> Columns:
    """The points of each column past `step` (columns in step order); all of them for None."""
    if step is None:
        return columns
    cut = {name: int(np.searchsorted(steps, step, side="right")) for name, (steps, _) in columns.items()}
    return {name: (steps[cut[name] :], values[cut[name] :]) for name, (steps, values) in columns.items()}


def files_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of each file in the folder: any write changes it."""
    stamp = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return ()
    for entry in entries:
        try:
            if entry.is_file():
                info = entry.stat()
                stamp.append((entry.name, info.st_mtime_ns, info.st_size))
        except OSError:
            continue  # removed while being looked at
    return tuple(sorted(stamp))


def file_status(run: ForeignRun, stamp: tuple[tuple[str, int, int], ...] | None = None) -> dict[str, Any]:
    """What file times say of a run: `live` when a file changed within LIVE_SECONDS, else `idle` since
    `since` (seconds since the epoch); `unknown` while the folder holds no file. With the images a step
    stands for, where the format says. `stamp`: the folder's files_stamp, when the caller just took it."""
    stamp = files_stamp(run.folder) if stamp is None else stamp
    since = max(mtime for _, mtime, _ in stamp) / 1e9 if stamp else None
    state = "unknown" if since is None else "live" if time.time() - since <= LIVE_SECONDS else "idle"
    status = {"state": state, "since": since, "kind": run.kind, "writer": run.writer, "read_only": True}
    if run.kind in IMAGES_PER_STEP:  # the images-seen axis places the run beside others
        status["images_per_step"] = IMAGES_PER_STEP[run.kind]
    return status


def idle_since(state: str, since: object) -> str:
    """`14:02` (or `2026-12-04 14:02` before today) for an idle read-only run; '' otherwise."""
    if state != "idle" or not isinstance(since, (int, float)):
        return ""
    then = time.localtime(since)
    today = time.localtime()[:3] == then[:3]
    return time.strftime("%H:%M" if today else "%Y-%m-%d %H:%M", then)


def image_files(folder: Path, images: list[LogImage]) -> list[tuple[int, Path]]:
    """(step, file) for each image, oldest first; encoded bytes go to a file in the cache, once."""
    cache = cache_root() / hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    found = []
    for image in images:
        if isinstance(image.image, Path):
            found.append((image.step, image.image))
            continue
        path = cache / _slug(image.tag) / f"step_{image.step:07d}{_suffix(image.image)}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_bytes(image.image)
            temporary.replace(path)  # a viewer reading meanwhile never sees half an image
        found.append((image.step, path))
    return sorted(found, key=lambda item: item[0])


def _slug(tag: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in tag) or "image"


def _suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".gif" if data.startswith(b"GIF8") else ".img"


class ForeignReader:
    """Polls a foreign run for the viewer: its reader's batches as `RunUpdate`s in ganterm's names.

    The health checks need steps in order, while a long history arrives newest first: the monitor
    runs once over everything when the history is in, then on each new stretch.
    """

    def __init__(self, run: ForeignRun) -> None:
        self.run = run
        self.reader = run.reader_factory(run.folder)
        self.names = TagNames(run.roles)
        self.opened = time.time()  # the `t` of alerts over the history: before the viewer opened, none rings
        self._health: Columns = {}  # what the monitor reads, in step order
        self._pieces: list[Columns] = []  # ... and what came since, to merge in
        self._unchecked: list[Columns] = []  # what came since the monitor last read
        self._readings = DReadings()
        self._monitor: HealthMonitor | None = None
        self._family: str | None = None
        self._checked: int | None = None  # the last step the monitor has read
        self._backlog: dict[str, np.ndarray] | None = None  # rows being read, a stretch a poll
        self._cursor = 0
        self._images: list[LogImage] = []
        self._skipped: dict[str, int] = {}
        self._status: dict[str, Any] | None = None
        self._history_in = False

    def poll(self) -> RunUpdate:
        batch = self.reader.poll()
        update = RunUpdate(reset=batch.reset, more=batch.more, log_lines=batch.log_lines, skipped=batch.bad_records)
        if batch.reset:
            self._health, self._monitor, self._family, self._images, self._history_in = {}, None, None, [], False
            self._checked, self._backlog, self._pieces, self._readings = None, None, [], DReadings()
            self._unchecked = []
        update.columns = with_time(self.names.columns(batch.scalars), batch.times)
        update.rows = _steps(update.columns)
        update.history = with_time(self.names.columns(batch.history), batch.history_times)
        update.history_rows = _steps(update.history)
        if batch.images or batch.reset:
            self._images += batch.images
            update.samples = [path for _, path in image_files(self.run.folder, self._images)]
        if batch.config is not None:
            update.settings = shown_settings(batch.config)
        for what, count in batch.skipped.items():
            self._skipped[what] = self._skipped.get(what, 0) + count
        update.events, checking = self._alerts(update.history, update.columns, batch.more)
        update.more = update.more or checking
        update.status = self._new_status()
        return update

    def _alerts(self, history: Columns, columns: Columns, more: bool) -> tuple[list[dict[str, Any]], bool]:
        """Alerts over what came, and whether some rows are still to be checked.

        Once the history is in, the monitor reads it in stretches of ALERT_ROWS_A_POLL (a million steps would
        hold the reader, and every other run's updates, for a minute), then each new stretch as it comes. The
        family is guessed again as D's outputs arrive; when it changes, the monitor reads everything again
        with the new family's checks.
        """
        new = {name: pair for name, pair in columns.items() if name in HEALTH_INPUTS}
        old = {name: pair for name, pair in history.items() if name in HEALTH_INPUTS}
        for piece in (new, old):
            for name in D_OUTPUTS:
                if name in piece:
                    self._readings.add(piece[name][1])
        came = [piece for piece in (old, new) if piece]
        self._pieces += came  # merged when all is read again, not at each poll: a long run's columns are big
        self._unchecked += came
        if len(self._pieces) > MERGE_PIECES:
            self._health_columns()
        family = family_from(self.run.kind, self.run.roles, self._readings)
        if family != self._family:
            self._family, self._monitor = family, HealthMonitor(HealthConfig(), own_loop=True, family=family)
            self._checked, self._backlog = None, None
        if more or self._monitor is None:
            return [], False  # the history is still coming: the checks need the steps in order
        if self._backlog is None:
            if self._checked is None:  # everything, the first time or with another family's checks
                unchecked = self._health_columns()
            else:  # only what came since
                unchecked = after(columns_in_step_order(merge_columns(self._unchecked)), self._checked)
            self._unchecked = []
            if not any(len(steps) for steps, _ in unchecked.values()):
                return [], False
            self._backlog, self._cursor = health_table(unchecked), 0
        table = self._backlog
        stop = min(self._cursor + ALERT_ROWS_A_POLL, len(table["step"]))
        t = time.time() if self._history_in else self.opened  # alerts of the history, from before the viewer
        events = alerts_over(self._monitor, table, self._cursor, stop, t)
        self._cursor = stop
        if stop == len(table["step"]):
            self._checked, self._backlog, self._history_in = int(table["step"][-1]), None, True
        return events, self._backlog is not None or bool(self._unchecked)  # what came meanwhile: next poll

    def _health_columns(self) -> Columns:
        """Everything the checks read so far, in step order: the pieces that came merged in."""
        if self._pieces:
            pieces = [self._health, *self._pieces]
            self._health, self._pieces = columns_in_step_order(merge_columns([piece for piece in pieces if piece])), []
        return self._health

    def _new_status(self) -> dict[str, Any] | None:
        """The state from file times and the family, told only when they changed."""
        status = {**file_status(self.run), "loss": self._family}
        if self._skipped:
            status["skipped"] = dict(self._skipped)
        if status == self._status:
            return None
        self._status = status
        return status

    def close(self) -> None:
        self.reader.close()


def _steps(columns: Columns) -> int:
    """How many steps a batch of columns holds (metrics logged at different steps count once per step)."""
    if not columns:
        return 0
    return len(distinct(np.concatenate([steps for steps, _ in columns.values()])))


PINNED_CHUNK_ROWS = 4096


class ForeignRows:
    """A foreign run's rows as they stood when opened, for an export: the same rows on every pass."""

    def __init__(self, source: ForeignRun) -> None:
        self.source = source
        self.name = source.name
        self._table = source.history()
        self.rows = len(self._table["step"])
        self.size = self.rows  # the export's progress counts rows here, not bytes
        self.skipped = source._collected().bad_records
        self.found: dict[str, None] = {}

    def chunks(self, advance: Callable[[int], None] = lambda _: None) -> Iterator[list[dict[str, Any]]]:
        """The rows in step order, a chunk at a time; `advance(rows)` after each chunk, for progress."""
        chunk: list[dict[str, Any]] = []
        for row in table_rows(self._table):
            chunk.append(row)
            if len(chunk) == PINNED_CHUNK_ROWS:
                advance(len(chunk))
                yield chunk
                chunk = []
        if chunk:
            advance(len(chunk))
            yield chunk

    def names(self, advance: Callable[[int], None] = lambda _: None) -> dict[str, None]:
        advance(self.rows)
        self.found = dict.fromkeys(self._table)
        return self.found

    def skipped_note(self) -> str | None:
        if not self.skipped:
            return None
        return f"{self.name}: passed over {self.skipped} corrupt record(s) of its {self.source.kind} files"
