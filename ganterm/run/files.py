"""Replacing a file whole: readers see the old file or the new, never half.

The one atomic writer of ganterm: status files, checkpoints, exported
generators and the quality classifier's cache all go through `write_atomic`
(exported histories, written as a stream, through `replacing`),
so a full disk surfaces the same way everywhere (an OSError with errno
ENOSPC naming the file), and a killed writer leaves only a `.NAME.PID.tmp`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, beside it, one per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temp path to write at leisure (a stream too long to hold in memory), renamed over `path` at the end.

    If the block raises, the temp file is removed and `path` is left as it was.
    """
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: Path, data: bytes | memoryview, durable: bool = False) -> None:
    """Replace `path` whole: readers see the old file or the new, never half.

    `durable` also survives a power cut: the data is fsynced before the rename
    and the folder after it, so the new name is on disk when this returns.
    """
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            try:
                handle.write(data)
                handle.flush()  # here, not in close(), so a full disk is reported below
                if durable:
                    os.fsync(handle.fileno())
            except OSError as error:
                # report the file the user knows, not our temp name; errno (ENOSPC, ...) is kept
                raise OSError(error.errno, error.strerror, str(path)) from error
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; a file system that cannot fsync a folder is left as it is."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
