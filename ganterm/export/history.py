"""A run's metrics.jsonl read in chunks of valid rows, as many times as an export needs, always the same rows.

A million-row history is never held whole: each pass streams the file a few
megabytes at a time. The file is pinned at the size it had when the export
began, so a run still training adds no rows between two passes, and a file cut
back meanwhile (a resume rewinds it, then writes on) is said, not silently
mixed: its identity, size and last bytes are checked before and after each pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from ganterm.errors import UserError
from ganterm.run.jsonl import ROW_RULE, JsonlTail, valid_row
from ganterm.run.layout import RunDir

CHUNK_BYTES = 4 << 20  # a few thousand rows per chunk: little memory, and Python's per-call costs stay small
LAST_BYTES = 4096  # compared before and after each pass: rows of a rewritten file differ in `t` at least
Rows = list[dict[str, Any]]


class History:
    """The metrics rows of one run, as they stood when the export opened it."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
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
            records = tail.read(min(CHUNK_BYTES, self.size - offset))
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
