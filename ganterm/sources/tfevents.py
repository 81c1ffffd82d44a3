"""Following a folder of TensorBoard event files as it grows, newest steps first, in raw tags.

A run is a folder holding `*tfevents*` files, as `tensorboard --logdir` has
it; its files are read in name order, each followed as it grows, and new ones
as they appear. Opening a long run reads the last NEWEST_FIRST_BYTES of its
newest file first, from a record boundary found by checking a chain of
records, so the newest steps show at once; everything before that boundary
(the older files, and the start of the newest one) is decoded by helper
processes (`ganterm.sources.history`), started once the first poll is done,
and handed out newest piece first, in `LogBatch.history`. Nothing here imports
torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ganterm.sources.columns import in_step_order, merge_columns
from ganterm.sources.history import CHUNK_BYTES, SpanHistory
from ganterm.sources.logbatch import LogBatch, LogImage, Series, unreadable_note
from ganterm.sources.tfevents_decode import Decoded, EventDecoder, require_extra
from ganterm.sources.tfrecords import CHAIN, HEADER, RecordTail, read_span, record_start

NEWEST_FIRST_BYTES = 1 << 20  # about 3,000 steps of 8 scalars: decoded in the first poll in well under a second
NEWEST_FIRST_SEARCH = 64 << 20  # how far back a record boundary is looked for (a second); past it, read from the start
READ_BYTES = 4 << 20  # at most this much of a file each poll: a long file appearing later fills in over a few polls
EVENT_FILE_MARK = "tfevents"  # TensorBoard's own test for an event file's name


class EventPiece(NamedTuple):
    """A stretch of history, as a helper process decodes it."""

    scalars: Series
    images: list[LogImage]
    skipped: dict[str, int]
    bad_records: int


def is_event_file(path: Path) -> bool:
    return EVENT_FILE_MARK in path.name and path.is_file()


def event_files(folder: Path) -> list[Path]:
    """The event files directly in `folder`, in TensorBoard's order: by name (it starts with the creation time)."""
    try:
        return sorted(path for path in folder.iterdir() if is_event_file(path))
    except OSError:  # gone, not a folder, or not ours to read
        return []


def _open_error(path: Path) -> OSError | None:
    """Why an event file cannot be opened (another user's, mode 0600), or None when it can be or is gone."""
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return None
    except OSError as error:
        return error


def find_event_runs(path: Path) -> list[Path]:
    """Each folder under `path`, itself too, holding event files directly: one run each, as --logdir finds them."""
    runs = []
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        if any(EVENT_FILE_MARK in name for name in files):
            runs.append(Path(folder))
    return runs


def parse_span(path: Path, start: int, end: int) -> EventPiece:
    """The events that start in bytes [start, end) of an event file; runs in a helper process."""
    found = read_span(path, start, end)
    decoded = Decoded()
    EventDecoder().decode(found, decoded)
    return EventPiece(decoded.series(), decoded.images, dict(decoded.skipped), found.bad + decoded.bad)


def file_spans(path: Path, end: int) -> list[tuple[Path, int, int]]:
    """[0, end) of a file in pieces of about CHUNK_BYTES, newest first; each piece finds its first record itself."""
    return [(path, max(0, stop - CHUNK_BYTES), stop) for stop in range(end, 0, -CHUNK_BYTES)]


def newest_boundary(path: Path, size: int) -> int:
    """A record boundary about NEWEST_FIRST_BYTES before the end, where a chain of records checks out.

    A position is taken only with a whole header there: the last bytes of a long record still being
    written cannot be told from a record's start. When the stretch holds no boundary (it lies inside
    one long record, a big image), the search looks four times further back, and so on, up to
    NEWEST_FIRST_SEARCH: a file whose end holds no record (garbage, the zeros a crash leaves) is read from
    its start, not searched through to it.
    """
    window = NEWEST_FIRST_BYTES
    while size > window and window <= NEWEST_FIRST_SEARCH:
        try:
            with open(path, "rb") as handle:
                handle.seek(size - window)
                buf = memoryview(handle.read(window))
        except OSError:  # gone since the folder was listed: its tail finds nothing, and no history is made of it
            return 0
        found = record_start(buf, 0, CHAIN)
        if found <= len(buf) - HEADER:
            return size - window + found
        window *= 4
    return 0


class TfeventsReader:
    """Follows one folder of event files: see the module's docstring. `poll` from one thread only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        require_extra()
        self._tails: dict[Path, RecordTail] = {}
        self._history: SpanHistory[EventPiece] | None = None
        self._history_spans: list[tuple[Path, int, int]] = []  # the history, until the first poll has read the rest
        self._refused: set[Path] = set()  # files that could not be opened, said once each
        self._notes: list[str] = []  # what to say in the next poll's log lines
        self._open()

    def _open(self) -> None:
        """Starts reading the folder's files as they are now: a long run's newest steps first."""
        self._decoder = EventDecoder()
        self._tails = {}
        files = self._new_files()
        sizes = {path: _size(path) for path in files}
        spans: list[tuple[Path, int, int]] = []
        if files and sum(sizes.values()) > NEWEST_FIRST_BYTES:
            *older, newest = files
            boundary = newest_boundary(newest, sizes[newest])
            self._tails = {path: RecordTail(path, sizes[path]) for path in older}
            self._tails[newest] = RecordTail(newest, boundary)
            spans = file_spans(newest, boundary)
            for path in reversed(older):
                spans += file_spans(path, sizes[path])
        else:
            self._tails = {path: RecordTail(path) for path in files}
        self._history_spans = spans

    def poll(self) -> LogBatch:
        batch = LogBatch(log_lines=self._notes)
        self._notes = []
        if any(tail.replaced() for tail in self._tails.values()):
            self.close()
            self._open()
            batch.reset = True
        for path in self._new_files():
            self._tails[path] = RecordTail(path)
        decoded = Decoded()
        for path in sorted(self._tails):
            found = self._tails[path].read(READ_BYTES)
            self._decoder.decode(found, decoded)
            batch.bad_records += found.bad
        batch.scalars, batch.images = decoded.series(), decoded.images
        skipped, batch.bad_records = decoded.skipped, batch.bad_records + decoded.bad
        if self._history is not None:
            pieces = self._history.ready()
            if pieces:
                merged = merge_columns([piece.scalars for piece in reversed(pieces)])
                batch.history = {tag: in_step_order(*points) for tag, points in merged.items()}
                for piece in pieces:
                    batch.images += piece.images
                    skipped.update(piece.skipped)
                    batch.bad_records += piece.bad_records
        batch.skipped = dict(skipped)
        if self._history_spans:  # started now: helpers starting beside it would slow the first poll down
            self._history, self._history_spans = SpanHistory(self._history_spans, parse_span), []
        batch.more = any(tail.behind for tail in self._tails.values()) or (
            self._history is not None and self._history.pending
        )
        return batch

    def _new_files(self) -> list[Path]:
        """The folder's event files not followed yet that can be opened; one that cannot is said once, left out."""
        found = []
        for path in event_files(self.folder):
            if path in self._tails:
                continue
            error = _open_error(path)
            if error is None:
                found.append(path)
            elif path not in self._refused:
                self._refused.add(path)
                self._notes.append(unreadable_note(path, error))
        return found

    def close(self) -> None:
        """Stops the helper processes still decoding the history."""
        self._history_spans = []
        if self._history is not None:
            self._history.close()
            self._history = None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
