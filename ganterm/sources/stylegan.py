"""Following a StyleGAN2-ADA / StyleGAN3-style training folder as it grows, in the format's own names.

NVlabs' training loop (stylegan2-ada-pytorch and stylegan3, `training/training_loop.py`) writes into its run
folder: `stats.jsonl`, one line per tick with every statistic as {"num", "mean", "std"} and a "timestamp";
`metric-<name>.jsonl`, one line per evaluated snapshot; `log.txt`, the console; `reals.png` and
`fakes_init.png` before training and a `fakes<kimg>.png` grid every few ticks; `network-snapshot-<kimg>.pkl`;
and, from `train.py`, `training_options.json`. Tags stay the format's own (`Loss/G/loss`, `Metrics/fid50k_full`):
mapping them to ganterm's roles is the job of the run built over this reader.

The step is the kimg number, thousands of real images shown, as a whole number: the loop names its grids and
snapshots by it, and it is the global step of the TensorBoard scalars the loop also writes into the folder. So
a tick's scalars, its grid and its snapshot's metrics share one step, and this folder overlays event files of
the same family. Those event files repeat stats.jsonl and are left alone here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from ganterm.run.jsonl import MAX_STEP, JsonlTail, TextTail  # MAX_STEP: a kimg past it is no step
from ganterm.sources.follow import file_stamp, log_tail
from ganterm.sources.logbatch import LogBatch, LogImage, Series, Times, earliest_times, unreadable_note

STATS_FILE = "stats.jsonl"
OPTIONS_FILE = "training_options.json"
LOG_FILE = "log.txt"
OPTIONS_LIMIT = 1 << 20  # train.py writes a few kilobytes: a file larger than this is not a run's settings
SEARCH_DEPTH = 2  # a results folder of runs (`00000-ffhq-...`), or a folder of such results folders
STEP_STAT = "Progress/kimg"
METRIC_PREFIX = "Metrics/"
FIXED_IMAGES = {"reals.png": "reals", "fakes_init.png": "fakes_init"}  # written before training: step 0
FAKES_TAG = "fakes"
_FAKES_FILE = re.compile(r"^fakes(\d+)\.png$")
_METRIC_FILE = re.compile(r"^metric-.+\.jsonl$")
_SNAPSHOT = re.compile(r"network-snapshot-(\d+)\.pkl$")
T = TypeVar("T")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk, the last bytes of every whole PNG


def is_stylegan_run(path: Path) -> bool:
    """A StyleGAN training folder holds stats.jsonl (the loop's), or training_options.json (train.py writes it
    first, before the loop opens stats.jsonl)."""
    try:
        return (path / STATS_FILE).is_file() or (path / OPTIONS_FILE).is_file()
    except OSError:  # a folder we may not look into
        return False


def find_stylegan_runs(path: Path) -> list[Path]:
    """`path` itself if it is a StyleGAN training folder, else those up to SEARCH_DEPTH levels under it, by name."""
    if is_stylegan_run(path):
        return [path]
    return _runs_under(path, SEARCH_DEPTH)


def _runs_under(folder: Path, depth: int) -> list[Path]:
    if depth == 0:
        return []
    try:
        children = sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    except OSError:  # not a folder, or not ours to read
        return []
    found: list[Path] = []
    for child in children:
        found += [child] if is_stylegan_run(child) else _runs_under(child, depth - 1)
    return found


def _loads(line: bytes) -> Any:
    """orjson, or the json module for the NaN and Infinity that Python's json.dumps writes for a diverged loss."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, or for an integer too long for a float (JSON allows it)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _step(kimg: str) -> int | None:
    """The kimg in a file's name as a step; None past what a step holds."""
    step = int(kimg)
    return step if step <= MAX_STEP else None


def _tick_step(record: dict[str, Any]) -> int | None:
    """The kimg of a stats.jsonl line, or None when it has none.

    The loop reports `cur_nimg / 1e3` through a float32 sum, so whole images are rounded to first: 8.0 may read
    7.9999995, and it is kimg 8 in the grid's and the snapshot's names.
    """
    stat = record.get(STEP_STAT)
    kimg = _float(stat.get("mean")) if isinstance(stat, dict) else None
    if kimg is None or not 0 <= kimg < MAX_STEP:  # NaN fails the comparison too
        return None
    return round(kimg * 1000) // 1000


class _Points:
    """Scalar points gathered in one poll, by tag."""

    def __init__(self) -> None:
        self._points: dict[str, tuple[list[int], list[float]]] = {}
        self._times: tuple[list[int], list[float]] = ([], [])  # each tick's kimg and timestamp

    def add(self, tag: str, step: int, value: float) -> None:
        steps, values = self._points.setdefault(tag, ([], []))
        steps.append(step)
        values.append(float(value))

    def add_tick(self, record: dict[str, Any]) -> bool:
        """Each statistic's mean; one with no values this run (num 0, its mean NaN) is no point. False: unusable."""
        step = _tick_step(record)
        if step is None:
            return False
        for name, stat in record.items():
            mean = _float(stat.get("mean")) if isinstance(stat, dict) else None
            if mean is not None and stat.get("num") != 0:
                self.add(name, step, mean)
        timestamp = _float(record.get("timestamp"))
        if timestamp is not None:
            self._times[0].append(step)
            self._times[1].append(timestamp)
        return True

    def add_metric(self, record: dict[str, Any]) -> bool:
        """Each result as `Metrics/<name>` at its snapshot's kimg. False: unusable."""
        results, snapshot = record.get("results"), record.get("snapshot_pkl")
        found = _SNAPSHOT.search(snapshot) if isinstance(snapshot, str) else None
        step = _step(found[1]) if found else None
        if step is None or not isinstance(results, dict):
            return False
        values = {name: _float(value) for name, value in results.items()}
        if None in values.values():
            return False
        for name, value in values.items():
            self.add(METRIC_PREFIX + name, step, value)
        return True

    def times(self) -> Times:
        """The ticks' timestamps; a metric file's are left out: they tell when a later evaluation ended."""
        return earliest_times(np.asarray(self._times[0], dtype=np.int64), np.asarray(self._times[1]))

    def series(self) -> Series:
        """In step order: a metric computed afterwards for an older snapshot lands among its neighbours."""
        series: Series = {}
        for tag, (steps, values) in self._points.items():
            step_array = np.asarray(steps, dtype=np.int64)
            order = np.argsort(step_array, kind="stable")
            series[tag] = step_array[order], np.asarray(values, dtype=np.float64)[order]
        return series


def _image_tag(name: str) -> tuple[str, int] | None:
    """The tag and step of a grid the loop writes, from its file name; None for any other file."""
    if name in FIXED_IMAGES:
        return FIXED_IMAGES[name], 0
    found = _FAKES_FILE.match(name)
    step = _step(found[1]) if found else None
    return None if step is None else (FAKES_TAG, step)


def _png_complete(path: Path) -> bool:
    """Pillow writes a grid in several writes; it is whole once the IEND chunk ends it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-len(_PNG_END), os.SEEK_END)
            return handle.read() == _PNG_END
    except OSError:  # gone, or shorter than the trailer
        return False


def _read_options(path: Path) -> dict[str, Any] | None:
    try:
        options = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):  # gone, or caught half-written: read again once it changes
        return None
    return options if isinstance(options, dict) else None


class StyleganReader:
    """Follows one StyleGAN training folder (a `LogReader`); `poll` from one thread only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._refused: set[Path] = set()  # files that could not be opened, said once each
        self._notes: list[str] = []  # what to say in the next poll's log lines
        self._start()

    def _start(self) -> None:
        """Everything unread: at first, and after the run was restarted in the same folder."""
        self._stats = JsonlTail(self.folder / STATS_FILE, loads=_loads)
        self._metrics: dict[str, JsonlTail] = {}
        log = self.folder / LOG_FILE
        self._log = self._opened(log, lambda: log_tail(log), lambda: TextTail(log))
        self._images_shown: set[str] = set()
        self._options_stamp: tuple[int, int] | None = None

    def poll(self) -> LogBatch:
        batch = self._read()
        if batch.reset:  # stats.jsonl (opened with 'wt') or a metric file was replaced or cut back
            self._start()
            batch = self._read()
            batch.reset = True
        return batch

    def _read(self) -> LogBatch:
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:  # the folder is gone: nothing new
            names = []
        for name in names:
            if _METRIC_FILE.match(name) and name not in self._metrics:
                self._metrics[name] = JsonlTail(self.folder / name, loads=_loads)
        tails = [self._stats, *self._metrics.values()]
        bad_before = sum(tail.bad_lines for tail in tails)
        points = _Points()
        unusable = sum(not points.add_tick(record) for record in self._opened(self._stats.path, self._stats.read, list))
        for tail in self._metrics.values():
            unusable += sum(not points.add_metric(record) for record in self._opened(tail.path, tail.read, list))
        batch = LogBatch(
            scalars=points.series(),
            times=points.times(),
            images=self._new_images(names),
            bad_records=unusable + sum(tail.bad_lines for tail in tails) - bad_before,
            reset=any(tail.reset for tail in tails),
            log_lines=self._opened(self._log.path, self._log.read, list),
        )
        options = self.folder / OPTIONS_FILE
        stamp = file_stamp(options)
        if stamp is not None and stamp[1] > OPTIONS_LIMIT:
            if self._options_stamp is None or self._options_stamp[1] <= OPTIONS_LIMIT:
                self._notes.append(
                    f"{OPTIONS_FILE} is {stamp[1] / 1e6:.1f} MB, more than a run's settings: it is not read."
                )
        elif stamp != self._options_stamp:
            batch.config = _read_options(options)
        self._options_stamp = stamp
        batch.log_lines[:0], self._notes = self._notes, []
        return batch

    def _opened(self, path: Path, read: Callable[[], T], otherwise: Callable[[], T]) -> T:
        """What `read` gives; when `path` cannot be opened, what `otherwise` gives, and one sentence, said once."""
        try:
            return read()
        except OSError as error:  # one that is gone is nothing new to its tail: this is one that is not ours
            if path not in self._refused:
                self._refused.add(path)
                self._notes.append(unreadable_note(path, error))
            return otherwise()

    def _new_images(self, names: list[str]) -> list[LogImage]:
        """Grids not handed out yet, each once it is whole."""
        images = []
        for name in names:
            tagged = _image_tag(name)
            if tagged is None or name in self._images_shown or not _png_complete(self.folder / name):
                continue
            self._images_shown.add(name)
            images.append(LogImage(tagged[0], tagged[1], self.folder / name))
        return sorted(images, key=lambda image: (image.step, image.tag))

    def close(self) -> None:
        """Nothing to stop: the whole folder is read in the poll itself (one line per tick stays small)."""
