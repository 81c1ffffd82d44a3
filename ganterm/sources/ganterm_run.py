"""A run folder that ganterm's worker or `ganterm.Run` writes, read as `open_run` hands it out.

Reads only: it never takes the lock, never writes, and a run still training
is read as it stands (a torn last line waits for its newline; rows that break
the row rule are left out and counted, as every viewer does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ganterm.errors import UserError
from ganterm.run.checkpoints import loop_checkpoints, step_files
from ganterm.run.jsonl import ROW_RULE, JsonlTail, latest_values, valid_event, valid_row
from ganterm.run.layout import RunDir
from ganterm.run.settings import read_nested_settings, read_settings
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status
from ganterm.sources.columns import Columns, columns_from_rows, history_table, merge_columns, parse_lines
from ganterm.sources.follow import RunReader

CHUNK_BYTES = 8 << 20  # read at a time by `metrics`
LAST_BYTES = 4096  # compared before and after each pass: rows of a rewritten file differ in `t` at least
Rows = list[dict[str, Any]]


class GantermRun:
    """One ganterm run folder: status, config, history as arrays, events, samples, checkpoints."""

    kind = "ganterm"
    read_only = False  # its writer (the worker, `ganterm.Run`) takes commands while it runs: see `controls`

    def __init__(self, run: RunDir) -> None:
        self.run = run

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def path(self) -> Path:
        return self.run.path

    def __repr__(self) -> str:
        return f"<ganterm run {self.name!r} at {self.path}>"

    def status(self) -> dict[str, Any]:
        """status.json as it stands, with `state` as viewers read it (`lost`, `stalled` derived from liveness)."""
        status = read_status(self.run)
        if status:
            return {**status, "state": effective_state(status)}
        # rows and no status: a folder some other writer fills in ganterm's format
        return {"state": "external" if self.latest(("step",)) else "unknown"}

    @property
    def controls(self) -> tuple[str, ...]:
        """The commands the writer takes now (pause, stop, ...); none once it has ended."""
        status = self.status()
        return tuple(status.get("controls", ())) if status["state"] in ACTIVE_STATES else ()

    def settings(self) -> dict[str, Any]:
        """The settings as dotted keys (`model.width`), as listings and exports show them; secrets left out."""
        return read_settings(self.run)

    def config(self) -> dict[str, Any]:
        """The run's settings as written: ganterm's config.toml, or a loop's `config=` (empty when there is none)."""
        return read_nested_settings(self.run)

    def metrics(self, names: Iterable[str] | None = None) -> Columns:
        """Each metric as (steps, values) arrays, only the steps that logged it; `names` picks some."""
        keep = None if names is None else set(names)
        pieces, tail = [], JsonlTail(self.run.metrics)
        while lines := tail.read_lines(CHUNK_BYTES):
            rows, _ = parse_lines(lines)
            columns, _ = columns_from_rows(rows, wanted=lambda name: keep is None or name in keep)
            pieces.append(columns)
        return merge_columns(pieces) if pieces else {}

    def history(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """One array per metric over every logged step, NaN where a step did not log it.

        Equal lengths with a `step` column: `pandas.DataFrame(run.history())` is the table.
        """
        return history_table(self.metrics(names))

    def latest(self, names: Collection[str]) -> dict[str, Any]:
        """Each metric's newest value (and `step`, `t`), read back from the end of the rows, not the whole file.

        A metric logged every few steps is missing from most rows; the newest row alone would show it absent.
        """
        return latest_values(self.run.metrics, names)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """events.jsonl's valid records in order (alerts, state changes, samples, checkpoints, log lines)."""
        records = [event for event in JsonlTail(self.run.events).read() if valid_event(event)]
        return [event for event in records if kind is None or event["kind"] == kind]

    def rows(self) -> list[dict[str, Any]]:
        """metrics.jsonl's valid rows as dicts, in file order (for a few thousand rows; `metrics` for more)."""
        return [row for row in JsonlTail(self.run.metrics).read() if valid_row(row)]

    def samples(self) -> list[tuple[int, Path]]:
        """(step, PNG path) of each sample grid, oldest first."""
        return self.run.sample_steps()

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of each checkpoint kept, oldest first: the worker's, or the files a loop saved."""
        if self.status().get("loop") == "own":
            return [(step, path) for step, path in loop_checkpoints(self.run) if path is not None and path.exists()]
        return step_files(self.run.checkpoints)

    def follow(self) -> RunReader:
        """A reader of what the run adds from now on, poll by poll; the newest steps first, then the history."""
        return RunReader(self.run)

    def pinned_rows(self) -> PinnedRows:
        """The valid rows as they stand now, streamed in chunks as often as needed (what an export writes)."""
        return PinnedRows(self)


PINNED_CHUNK_BYTES = 4 << 20  # a few thousand rows a chunk: little memory, and Python's per-call costs stay small


class PinnedRows:
    """The metrics rows of one run as they stood when opened, read as often as needed, always the same rows.

    A million-row history is never held whole: each pass streams the file a few
    megabytes at a time. The file is pinned at the size it had when opened, so a
    run still training adds no rows between two passes, and a file cut back
    meanwhile (a resume rewinds it, then writes on) is said, not silently mixed:
    its identity, size and last bytes are checked before and after each pass.
    """

    def __init__(self, source: GantermRun) -> None:
        self.source = source
        run = self.run = source.run
        try:
            stat = os.stat(run.metrics)
        except FileNotFoundError:
            raise UserError(f"run {run.name!r} has no metrics.jsonl yet: nothing to export") from None
        self.size = stat.st_size
        self._identity = (stat.st_dev, stat.st_ino)
        self._last_bytes = self._read_last_bytes()
        self.rows = 0  # counted by the first pass
        self.skipped = 0  # lines left out: unreadable, or not a valid row (ROW_RULE)
        self.found: dict[str, None] = {}  # every name the rows hold, once `names` has looked
        self._passes = 0

    def chunks(self, advance: Callable[[int], None] = lambda _: None) -> Iterator[Rows]:
        """The valid rows in file order, a chunk at a time; `advance(bytes)` after each chunk, for progress."""
        try:
            stat = os.stat(self.run.metrics)
        except FileNotFoundError:
            raise self._changed() from None
        if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self.size:  # replaced or cut back
            raise self._changed()
        self._check_last_bytes()
        tail = JsonlTail(self.run.metrics)
        tail.start_at(0)
        first, rows, skipped = self._passes == 0, 0, 0
        self._passes += 1
        while tail.offset < self.size:
            offset = tail.offset
            records = tail.read(min(PINNED_CHUNK_BYTES, self.size - offset))
            if tail.reset or tail.offset == offset:
                raise self._changed()
            valid = [record for record in records if valid_row(record)]
            skipped += len(records) - len(valid)
            rows += len(valid)
            advance(tail.offset - offset)
            if valid:
                yield valid
        self._check_last_bytes()  # cut back and grown again meanwhile: the same size, other rows
        if first:
            self.rows, self.skipped = rows, skipped + tail.bad_lines

    def names(self, advance: Callable[[int], None] = lambda _: None) -> dict[str, None]:
        """Every name the rows hold, in the order first met (a first pass: rows are sparse, shapes are few)."""
        names: dict[str, None] = {}
        shapes: set[tuple[str, ...]] = set()
        for chunk in self.chunks(advance):
            for row in chunk:
                shape = tuple(row)
                if shape not in shapes:
                    shapes.add(shape)
                    names.update(dict.fromkeys(shape))
        self.found = names
        return names

    def _read_last_bytes(self) -> bytes:
        """The end of the pinned span: a resume that cut the file back and wrote on past it changes these."""
        with open(self.run.metrics, "rb") as handle:
            handle.seek(max(0, self.size - LAST_BYTES))
            return handle.read(min(self.size, LAST_BYTES))

    def _check_last_bytes(self) -> None:
        if self._read_last_bytes() != self._last_bytes:
            raise self._changed()

    def skipped_note(self) -> str | None:
        if not self.skipped:
            return None
        return f"{self.run.name}: left out {self.skipped} malformed line(s) of metrics.jsonl (a row needs {ROW_RULE})"

    def _changed(self) -> UserError:
        return UserError(
            f"metrics.jsonl of run {self.run.name!r} was rewritten during the export (a resume cuts it back); "
            "export again"
        )
