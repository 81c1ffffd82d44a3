"""Following one ganterm run folder as it grows: what the dashboard shows, read incrementally.

Only new bytes are read; a torn last line waits for its newline. A long file's
newest steps are read first, here; the history before them is parsed by helper
processes (history.py) and fills the plots in behind, so a million-step file
never freezes the viewer. Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganterm.run.jsonl import JsonlTail, LineTail, TextTail, valid_event
from ganterm.run.layout import RunDir
from ganterm.run.settings import read_settings
from ganterm.run.status import read_status
from ganterm.sources.columns import columns_from_rows, merge_columns, parse_lines
from ganterm.sources.history import MetricsHistory

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
    settings: dict[str, Any] | None = None  # the run's config, as dotted keys, when it changed
    more: bool = False  # history still unread; poll again soon
    skipped: int = 0  # lines of metrics.jsonl or events.jsonl left out this poll: unreadable or malformed

    def __bool__(self) -> bool:
        return bool(self.rows or self.history_rows or self.reset or self.events or self.status is not None
                    or self.log_lines or self.samples is not None or self.skipped
                    or self.settings is not None)  # fmt: skip


def _first_whole_line(path: Path, size: int, window: int) -> int:
    """The offset of the first whole line in the last `window` bytes of a file `size` bytes long."""
    with open(path, "rb") as handle:
        handle.seek(size - window)
        return size - window + handle.read(window).find(b"\n") + 1


def _log_tail(path: Path) -> TextTail:
    """Starts near the end of worker.log: the viewer shows its tail, not its whole history."""
    tail = TextTail(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return tail
    if size > LOG_TAIL_BYTES:
        tail.start_at(_first_whole_line(path, size, LOG_TAIL_BYTES))
    return tail


def _metrics_tail(path: Path) -> tuple[LineTail, MetricsHistory | None]:
    """Live reading starts near the end of a long file; the history before it is read afterwards."""
    tail = LineTail(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return tail, None
    if size <= NEWEST_FIRST_BYTES:
        return tail, None
    start = _first_whole_line(path, size, NEWEST_FIRST_BYTES)
    tail.start_at(start)
    return tail, MetricsHistory(path, start)


class RunReader:
    """Polls one run directory; call from one thread only."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.metrics, self.history = _metrics_tail(run.metrics)
        self.events = JsonlTail(run.events)
        self.log = _log_tail(run.log)
        self.bad_lines = 0  # unreadable or malformed lines of metrics.jsonl and events.jsonl, so far
        self._bad_events = 0
        self._status_stamp: tuple[int, int] | None = None
        self._samples_stamp: tuple[int, int] | None = None
        self._settings_stamp: tuple[object, ...] | None = None

    def poll(self) -> RunUpdate:
        update = RunUpdate()
        lines = self.metrics.read_lines(METRICS_CHUNK_BYTES)
        update.reset = self.metrics.reset
        if update.reset and self.history is not None:
            self.history.close()
            self.history = None
        bad_before = self.bad_lines
        rows, bad = parse_lines(lines)
        update.columns, malformed = columns_from_rows(rows)
        self.bad_lines += bad + malformed
        update.rows = len(rows) - malformed
        pieces = self.history.ready() if self.history is not None and self.history.pending else []
        if pieces:
            self.bad_lines += sum(bad for _, _, bad in pieces)
            update.history_rows = sum(count for _, count, _ in pieces)
            update.history = merge_columns([columns for columns, _, _ in reversed(pieces)])
        update.more = self.metrics.pending_bytes > 0 or (self.history is not None and self.history.pending)
        events = self.events.read()
        update.events = [event for event in events if valid_event(event)]
        self.bad_lines += len(events) - len(update.events) + self.events.bad_lines - self._bad_events
        self._bad_events = self.events.bad_lines
        update.skipped = self.bad_lines - bad_before
        update.log_lines = self.log.read()
        stamp = _stamp(self.run.status)
        if stamp != self._status_stamp:
            self._status_stamp = stamp
            update.status = read_status(self.run) or {}
        stamp = _stamp(self.run.samples)
        if stamp != self._samples_stamp:
            self._samples_stamp = stamp
            update.samples = self.run.sample_files()
        stamp = _stamp(self.run.loop_config), _stamp(self.run.config)
        if stamp != self._settings_stamp:
            self._settings_stamp = stamp
            update.settings = read_settings(self.run)
        return update

    def close(self) -> None:
        """Stops the history parsers of a run the viewer no longer shows."""
        if self.history is not None:
            self.history.close()


def _stamp(path: Path) -> tuple[int, int] | None:
    """Modification time and size: cheap change detection without reading the file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size
