"""The older part of a long file, parsed by helper processes while the viewer runs.

Parsing a million rows is seconds of work that holds the GIL: in the viewer's
process it would starve the screen, and two cores do it in half the time of
one. Each helper is `python -m ganterm.sources.history MODULE:FUNCTION START:END:PATH ...`,
a plain child process (multiprocessing would re-import the user's `__main__`
and trips over the file descriptors Textual replaces), which calls the named
parser on each span and writes one pickled piece per span to its stdout.
Pieces are handed out round-robin, newest first, and come back in that order,
so each can go in front of what the viewer already shows. A metrics.jsonl
(`MetricsHistory`) and TensorBoard event files (`ganterm.sources.tfevents`)
are read this way.
"""

from __future__ import annotations

import importlib
import itertools
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from ganterm.run.schema import NOT_PLOTTED_ALONE
from ganterm.sources.columns import columns_from_rows, parse_lines

HELPERS = 2
CHUNK_BYTES = 8 << 20

Columns = dict[str, tuple[np.ndarray, np.ndarray]]
Piece = tuple[Columns, int, int]  # columns, rows, unreadable or malformed lines
Span = tuple[Path, int, int]  # a file, and the bytes [start, end) of it that one piece holds
P = TypeVar("P")


def parse_span(path: Path, start: int, end: int) -> Piece:
    """Whole lines in bytes [start, end) of a metrics file, as columns of the plotted metrics.

    Only the newest value of the other columns is ever shown, and the newest steps have it.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    rows, bad = parse_lines(data.split(b"\n"))
    plotted, malformed = columns_from_rows(rows, wanted=lambda name: name == "t" or name not in NOT_PLOTTED_ALONE)
    return plotted, len(rows) - malformed, bad + malformed


def spans(path: Path, end: int) -> list[tuple[int, int]]:
    """[0, end) cut at line ends into pieces of about CHUNK_BYTES, newest first."""
    cuts = [end]
    with open(path, "rb") as handle:
        while cuts[-1] > CHUNK_BYTES:
            handle.seek(cuts[-1] - CHUNK_BYTES)
            handle.readline()  # on to the start of the next whole line
            if handle.tell() >= cuts[-1]:
                break  # one line longer than a chunk: the rest is a single piece
            cuts.append(handle.tell())
    cuts.append(0)
    return [(start, stop) for stop, start in itertools.pairwise(cuts)]


class SpanHistory(Generic[P]):
    """Spans of files, given newest first, delivered as parsed pieces in that order.

    `parse(path, start, end)` must be a module-level function: the helpers import it by name.
    """

    def __init__(self, spans: list[Span], parse: Callable[[Path, int, int], P]) -> None:
        self._spans = spans
        self._parse = parse
        self._next = 0  # index of the next piece to hand over
        self._parsed: dict[int, P | None] = {}  # None: a span that could not be read, left out
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._start_helpers()  # now: their start-up overlaps the viewer's, and the newest steps' parsing

    @property
    def pending(self) -> bool:
        return self._next < len(self._spans)

    def ready(self) -> list[P]:
        """The pieces parsed so far, newest first, up to the first one still being parsed."""
        with self._lock:
            done = []
            while self._next in self._parsed:
                piece = self._parsed.pop(self._next)
                if piece is not None:
                    done.append(piece)
                self._next += 1
            return done

    def _start_helpers(self) -> None:
        if not self._spans:
            return
        count = max(1, min(HELPERS, os.cpu_count() or 1, len(self._spans)))
        parser = f"{self._parse.__module__}:{self._parse.__qualname__}"
        for helper in range(count):
            indices = list(range(helper, len(self._spans), count))
            args = [f"{start}:{end}:{path}" for path, start, end in (self._spans[i] for i in indices)]
            process = subprocess.Popen(
                [sys.executable, "-m", "ganterm.sources.history", parser, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            self._helpers.append(process)
            threading.Thread(target=self._collect, args=(process, indices), daemon=True).start()

    def _collect(self, process: subprocess.Popen[bytes], indices: list[int]) -> None:
        """One helper's pieces, in order; whatever it did not deliver (it died) is parsed here.

        The helper is reaped once it is done with, delivered or stopped: left alone it stays a zombie as long as
        the viewer runs.
        """
        assert process.stdout is not None
        try:
            for index in indices:
                try:
                    piece = pickle.load(process.stdout)
                except Exception:  # the helper died (killed, out of memory) or `close` stopped it
                    if self._closed:
                        return
                    piece = self._parse_here(index)
                with self._lock:
                    self._parsed[index] = piece
        finally:
            process.stdout.close()
            process.wait()

    def _parse_here(self, index: int) -> P | None:
        """A span its helper did not deliver, parsed in this process; None when its file is gone or unreadable now
        (left out: a piece never delivered would keep the history pending for ever)."""
        try:
            return self._parse(*self._spans[index])
        except OSError:
            return None

    def close(self) -> None:
        """Stops the helpers of a run the viewer no longer shows."""
        self._closed = True
        for process in self._helpers:
            if process.poll() is None:
                process.kill()
        self._next = len(self._spans)


class MetricsHistory(SpanHistory[Piece]):
    """Bytes [0, end) of a metrics file, delivered as parsed pieces, newest first."""

    def __init__(self, path: Path, end: int) -> None:
        super().__init__([(path, start, stop) for start, stop in spans(path, end)], parse_span)


def main(argv: list[str]) -> None:
    module, name = argv[0].split(":")
    parse = getattr(importlib.import_module(module), name)
    for span in argv[1:]:
        start, end, path = span.split(":", 2)
        piece = parse(Path(path), int(start), int(end))
        pickle.dump(piece, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
