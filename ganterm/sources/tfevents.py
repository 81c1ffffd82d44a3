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
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ganterm.sources.columns import columns_in_step_order, merge_columns
from ganterm.sources.history import CHUNK_BYTES, SpanHistory
from ganterm.sources.logbatch import LogBatch, LogImage, Series, Times, merge_times, unreadable_note
from ganterm.sources.tfevents_decode import Decoded, EventDecoder, require_extra
from ganterm.sources.tfrecords import CHAIN, HEADER, RecordTail, Scan, read_span, record_start

NEWEST_FIRST_BYTES = 1 << 20  # about 3,000 steps of 8 scalars: decoded in the first poll in well under a second
NEWEST_FIRST_SEARCH = 64 << 20  # how far back a record boundary is looked for (a second); past it, read from the start
READ_BYTES = 4 << 20  # at most this much of a file each poll: a long file appearing later fills in over a few polls
EVENT_FILE_MARK = "tfevents"  # TensorBoard's own test for an event file's name
HEAD_BYTES = 4096  # the start of a file, where a resumed writer's SessionLog START is looked for


class EventPiece(NamedTuple):
    """A stretch of one file, as a helper process decodes it (or a poll, its new records)."""

    path: Path
    scalars: Series
    times: Times  # the wall time of each step of the scalars
    images: list[LogImage]
    skipped: dict[str, int]
    bad_records: int

    def before(self, restart: int | None) -> EventPiece:
        """Without what is at step `restart` or later: a later file's writer restarted there (purge_step), and
        TensorBoard drops what was logged before the restart from that step on."""
        if restart is None:
            return self
        scalars = {}
        for tag, (steps, values) in self.scalars.items():
            kept = steps < restart
            if kept.any():
                scalars[tag] = (steps[kept], values[kept])
        images = [image for image in self.images if image.step < restart]
        steps, seconds = self.times
        kept = steps < restart
        return self._replace(scalars=scalars, times=(steps[kept], seconds[kept]), images=images)


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
    return decoded_piece(path, read_span(path, start, end), EventDecoder())[0]


def decoded_piece(path: Path, found: Scan, decoder: EventDecoder) -> tuple[EventPiece, list[int]]:
    """The records of a scan of `path` as a piece, and the steps of the SessionLog STARTs among them."""
    decoded = Decoded()
    decoder.decode(found, decoded)
    piece = EventPiece(
        path, decoded.series(), decoded.times(), decoded.images, dict(decoded.skipped), found.bad + decoded.bad
    )
    return piece, decoded.restarts


def first_restart(path: Path) -> int | None:
    """The step of a SessionLog START among a file's first records: a writer made with purge_step writes it
    right after the file's version, so it is known before the rest of the run is read."""
    restarts = decoded_piece(path, read_span(path, 0, HEAD_BYTES), EventDecoder())[1]
    return restarts[0] if restarts else None


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
        self._restarts: dict[Path, int | None] = {}  # each file's SessionLog START step, once looked for
        self._stale = False  # a START came in a file's new records: what was shown before it must go
        self._notes: list[str] = []  # what to say in the next poll's log lines
        self._open()

    def _open(self) -> None:
        """Starts reading the folder's files as they are now: a long run's newest steps first."""
        self._decoder = EventDecoder()
        self._tails = {}
        self._stale = False
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
        new_files = self._new_files()
        restarted = any(self._restarts[path] is not None for path in new_files)  # a writer resumed with purge_step
        if self._stale or restarted or any(tail.replaced() for tail in self._tails.values()):
            self.close()
            self._open()
            batch.reset = True
        else:
            self._tails.update((path, RecordTail(path)) for path in new_files)
        restarts = self._restarts_after()
        live = [self._read_on(path).before(restarts[path]) for path in sorted(self._tails)]
        batch.scalars = columns_in_step_order(merge_columns([piece.scalars for piece in live]))
        batch.times = merge_times([piece.times for piece in live])
        pieces = self._history.ready() if self._history is not None else []
        pieces = [piece.before(restarts.get(piece.path)) for piece in pieces]
        if pieces:
            batch.history = columns_in_step_order(merge_columns([piece.scalars for piece in reversed(pieces)]))
            batch.history_times = merge_times([piece.times for piece in pieces])
        skipped: Counter[str] = Counter()
        for piece in [*live, *pieces]:
            batch.images += piece.images
            skipped.update(piece.skipped)
            batch.bad_records += piece.bad_records
        batch.skipped = dict(skipped)
        if self._history_spans:  # started now: helpers starting beside it would slow the first poll down
            self._history, self._history_spans = SpanHistory(self._history_spans, parse_span), []
        batch.more = (
            self._stale
            or any(tail.behind for tail in self._tails.values())
            or (self._history is not None and self._history.pending)
        )
        return batch

    def _read_on(self, path: Path) -> EventPiece:
        """A file's new records; a START among them not known from its first records makes the run stale."""
        piece, restarts = decoded_piece(path, self._tails[path].read(READ_BYTES), self._decoder)
        if restarts and self._restarts.get(path) is None:
            self._restarts[path] = restarts[0]
            self._stale = True  # read again at the next poll, without what the restart drops
        return piece

    def _restarts_after(self) -> dict[Path, int | None]:
        """For each file, the lowest step a later file's writer restarted at (purge_step), or None."""
        after: dict[Path, int | None] = {}
        lowest: int | None = None
        for path in sorted(self._tails, reverse=True):
            after[path] = lowest
            restart = self._restarts.get(path)
            if restart is not None:
                lowest = restart if lowest is None else min(lowest, restart)
        return after

    def _new_files(self) -> list[Path]:
        """The folder's event files not followed yet that can be opened; one that cannot is said once, left out."""
        found = []
        for path in event_files(self.folder):
            if path in self._tails:
                continue
            error = _open_error(path)
            if error is None:
                found.append(path)
                if path not in self._restarts:
                    self._restarts[path] = first_restart(path)
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
