"""A user loop's console, copied into its run's worker.log, the file the dashboard's log panel shows.

The console still gets every character first, as it would without ganterm;
the copy is best effort (a full disk loses the copy, never the console).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, TextIO

from ganterm.logline import log_line


class LogFile:
    """worker.log opened for appending: the loop's own output as it comes, ganterm's lines with a time stamp."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115 (closed in close)

    def write(self, text: str) -> None:
        if self._file.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self._file.write(text)

    def line(self, message: str) -> None:
        """One line of ganterm's own, stamped as the worker stamps its log lines."""
        self.write(log_line(message) + "\n")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


LINE_LIMIT = 16_384  # characters of one unfinished line held back; past it the line goes to the log as it is


class Tee:
    """A console stream that also hands what it writes to a `LogFile`; all else is the console's own.

    The log gets whole lines only, each as the console last showed it: a progress bar redrawn with `\r`
    (tqdm) is one line in the log when it ends, not one line that never ends.
    """

    def __init__(self, console: TextIO, copy: LogFile) -> None:
        self.console = console
        self.copy = copy
        self._unfinished = ""

    def write(self, text: str) -> int:
        written = self.console.write(text)
        *lines, rest = (self._unfinished + text).split("\n")
        if lines:
            self.copy.write("".join(line.rpartition("\r")[2] + "\n" for line in lines))
        self._unfinished = rest.rpartition("\r")[2]
        if len(self._unfinished) > LINE_LIMIT:
            self.copy.write(self._unfinished + "\n")
            self._unfinished = ""
        return written

    def flush(self) -> None:
        self.console.flush()
        self.copy.flush()

    def finish(self) -> None:
        """What is left of an unfinished line goes to the log as a line of its own."""
        if self._unfinished:
            self.copy.write(self._unfinished + "\n")
            self._unfinished = ""
        self.copy.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: tqdm and rich see the console
        return getattr(self.console, name)


class ConsoleCopy:
    """sys.stdout and sys.stderr teed into `log` until `restore`, which puts back what was there."""

    def __init__(self, log: LogFile) -> None:
        # None under pythonw and some services: nothing to copy, nothing to wrap
        self.stdout = None if sys.stdout is None else Tee(sys.stdout, log)
        self.stderr = None if sys.stderr is None else Tee(sys.stderr, log)
        sys.stdout = self.stdout or sys.stdout  # type: ignore[assignment]
        sys.stderr = self.stderr or sys.stderr  # type: ignore[assignment]

    def restore(self) -> None:
        """Each stream goes back to what it was, unless the loop has replaced ours since (theirs stays)."""
        for tee in (self.stdout, self.stderr):
            if tee is not None:
                tee.finish()
        if self.stdout is not None and sys.stdout is self.stdout:
            sys.stdout = self.stdout.console
        if self.stderr is not None and sys.stderr is self.stderr:
            sys.stderr = self.stderr.console
