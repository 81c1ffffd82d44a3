"""One writer per run: an exclusive lock the kernel releases when its holder dies."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ganterm.errors import UserError
from ganterm.run.layout import RunDir


class RunLocked(UserError):
    """Another live worker is training this run directory."""


def acquire_lock(run: RunDir) -> int:
    """Hold an exclusive lock on the run for this process's lifetime; returns its fd.

    The kernel drops a flock when its holder dies, even by kill -9, so a
    crashed worker never leaves a run locked.
    """
    import fcntl

    fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"run {run.name!r} is already being trained by process {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def lock_holder(run: RunDir) -> str | None:
    """The pid text of the process holding the run's lock, or None when nobody holds it."""
    import fcntl

    if not run.lock.exists():
        return None
    fd = os.open(run.lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # closing drops the shared lock taken to look
    return None


START_LOCK = "start.lock"  # flocked by a launcher while it starts the run's worker


@contextlib.contextmanager
def one_starter(run: RunDir) -> Iterator[None]:
    """Held while a worker is started for `run`, from the check that nobody trains it to its `starting` status.

    Two `ganterm train --resume` of one run at once take turns here, and the second then finds the first's
    worker starting; without it both passed the check and started a worker each. A flock on `start.lock`,
    opened for writing (NFS takes an exclusive lock only on a file open for writing, not on a folder);
    the kernel drops it if the launcher dies.
    """
    import fcntl

    fd = os.open(run.path / START_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
