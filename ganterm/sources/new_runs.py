"""Runs that appear later under a folder given whole (a `--logdir`), as TensorBoard picks them up.

A new experiment writes a new subfolder of event files, StyleGAN's loop a new
`0000N-...` folder; the viewer asks `NewRuns.poll()` at every refresh and
shows what it gives. Finding runs walks the folders, so a walk is made at
most every RESCAN_SECONDS, and less often when walks are slow: they never
take more than a twentieth of the asking thread's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ganterm.run.layout import RunDir
from ganterm.sources import Source, find_runs

RESCAN_SECONDS = 5.0  # TensorBoard's own --reload_interval
WALK_SHARE = 20  # a walk that took w seconds waits at least WALK_SHARE × w before the next


def logdirs(arguments: Iterable[str]) -> list[Path]:
    """The folders a command line gives whole, as `open_runs` takes them: folders that are no ganterm run."""
    folders = (Path(argument).expanduser() for argument in arguments)
    return [folder for folder in folders if folder.is_dir() and not RunDir(folder).exists()]


class NewRuns:
    """The runs at or under `folders` that are not among `shown`, each given once, as it appears."""

    def __init__(
        self,
        folders: list[Path],
        shown: Iterable[Source],
        roles: str | Path | None = None,
        every: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = folders
        self.roles = roles
        self.every = every
        self.clock = clock
        self.known = {run.path.resolve() for run in shown}
        self.due = clock() + every
        self.walks = 0  # how many times the folders were walked

    def poll(self) -> list[Source]:
        """The runs that appeared since the last walk, when a walk is due; else nothing, at no cost."""
        started = self.clock()
        if not self.folders or started < self.due:
            return []
        found = []
        for folder in self.folders:
            try:
                runs = find_runs(folder, self.roles)
            except OSError:  # a folder removed or made unreadable during the walk: the next walk looks again
                continue
            for run in runs:
                key = run.path.resolve()
                if key not in self.known:
                    self.known.add(key)
                    found.append(run)
        self.walks += 1
        finished = self.clock()
        self.due = finished + max(self.every, WALK_SHARE * (finished - started))
        return found
