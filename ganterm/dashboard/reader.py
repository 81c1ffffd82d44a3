"""Incremental reading of one run directory for the dashboard.

Only new bytes are read; a torn last line waits for its newline. History is
read in bounded chunks so a million-step file fills the plots progressively
instead of freezing the viewer. Nothing here imports torch.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ganterm.dashboard.series import columns_from_rows
from ganterm.rundir import JsonlTail, LineTail, RunDir, TextTail, read_status

METRICS_CHUNK_BYTES = 8 << 20
NEWEST_FIRST_BYTES = 4 << 20  # about 10,000 steps: read first, so a long run is on screen at once
LOG_TAIL_BYTES = 32 << 10


@dataclass
class RunUpdate:
    """What changed in a run directory since the last poll."""

    columns: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    rows: int = 0
    history: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # older points, to prepend
    history_rows: int = 0
    reset: bool = False  # metrics were rewound (a resumed run): drop what was shown
    events: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    log_lines: list[str] = field(default_factory=list)
    samples: list[Path] | None = None
    more: bool = False  # history still unread; poll again soon

    def __bool__(self) -> bool:
        return bool(self.rows or self.history_rows or self.reset or self.events or self.status is not None
                    or self.log_lines or self.samples is not None)  # fmt: skip


def parse_lines(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Records of complete JSONL lines, parsed in one call; a bad line is skipped and counted."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return [], 0
    try:
        with _no_gc():
            records = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        records = []
        for line in lines:
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    good = [record for record in records if isinstance(record, dict)]
    return good, len(lines) - len(good)


@contextmanager
def _no_gc() -> Iterator[None]:
    """A million small dicts would trigger the cycle collector again and again; they hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _log_tail(path: Path) -> TextTail:
    """Starts near the end of worker.log: the viewer shows its tail, not its whole history."""
    tail = TextTail(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return tail
    if size > LOG_TAIL_BYTES:
        tail.start_at(size - LOG_TAIL_BYTES)
        tail.read()  # drop the partial first line
    return tail


class MetricsHistory:
    """The part of metrics.jsonl before the newest-first tail, read chunk by chunk, newest chunk first."""

    def __init__(self, path: Path, end: int) -> None:
        self.path = path
        self.end = end  # the byte where the tail starts; history is [0, end)

    @property
    def pending(self) -> bool:
        return self.end > 0

    def read_chunk(self) -> list[bytes]:
        start = max(0, self.end - METRICS_CHUNK_BYTES)
        with open(self.path, "rb") as handle:
            handle.seek(start)
            data = handle.read(self.end - start)
        if start > 0:
            cut = data.find(b"\n") + 1  # the first line may be cut: leave it to the next chunk
            data, start = data[cut:], start + cut
        self.end = start
        return data.split(b"\n")


def _metrics_tail(path: Path) -> tuple[LineTail, MetricsHistory | None]:
    """Live reading starts near the end of a long file; the history before it is read afterwards."""
    tail = LineTail(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return tail, None
    if size <= NEWEST_FIRST_BYTES:
        return tail, None
    with open(path, "rb") as handle:
        handle.seek(size - NEWEST_FIRST_BYTES)
        start = size - NEWEST_FIRST_BYTES + handle.read(NEWEST_FIRST_BYTES).find(b"\n") + 1
    tail.start_at(start)
    return tail, MetricsHistory(path, start)


class RunReader:
    """Polls one run directory; call from one thread only."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.metrics, self.history = _metrics_tail(run.metrics)
        self.events = JsonlTail(run.events)
        self.log = _log_tail(run.log)
        self.bad_lines = 0
        self._status_stamp: tuple[int, int] | None = None
        self._samples_stamp: tuple[int, int] | None = None

    def poll(self) -> RunUpdate:
        update = RunUpdate()
        lines = self.metrics.read_lines(METRICS_CHUNK_BYTES)
        update.reset = self.metrics.reset
        if update.reset:
            self.history = None
        rows, bad = parse_lines(lines)
        self.bad_lines += bad
        update.rows = len(rows)
        update.columns = columns_from_rows(rows)
        if self.history is not None and self.history.pending and update.rows < 1000:
            older, bad = parse_lines(self.history.read_chunk())
            self.bad_lines += bad
            update.history_rows = len(older)
            update.history = columns_from_rows(older)
        update.more = self.metrics.pending_bytes > 0 or (self.history is not None and self.history.pending)
        update.events = self.events.read()
        update.log_lines = self.log.read()
        stamp = _stamp(self.run.status)
        if stamp != self._status_stamp:
            self._status_stamp = stamp
            update.status = read_status(self.run) or {}
        stamp = _stamp(self.run.samples)
        if stamp != self._samples_stamp:
            self._samples_stamp = stamp
            update.samples = self.run.sample_files()
        return update


def _stamp(path: Path) -> tuple[int, int] | None:
    """Modification time and size: cheap change detection without reading the file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size
