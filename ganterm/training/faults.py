"""Fault injection for the crash-safety tests; inert unless GANTERM_FAULTS is set.

GANTERM_FAULTS holds `;`-separated `name=value` pairs, e.g.
`nan_at=40,41;slow_checkpoint=3;disk_full_at=30`. A real worker process can
then be made to produce a NaN loss at given steps, to linger inside a
checkpoint write so a test can kill it there, or to meet a full disk.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path


def _faults() -> dict[str, str]:
    pairs = (item.partition("=") for item in os.environ.get("GANTERM_FAULTS", "").split(";") if item)
    return {name.strip(): value.strip() for name, _, value in pairs}


def steps(name: str) -> frozenset[int]:
    value = _faults().get(name, "")
    return frozenset(int(v) for v in value.split(",") if v.strip().isdigit())


def pause_if(name: str) -> None:
    seconds = _faults().get(name)
    if seconds:
        time.sleep(float(seconds))


def disk_full_if(name: str, step: int, path: Path) -> None:
    """Raise what a full disk raises on writing `path`, at the steps listed under `name`."""
    if step in steps(name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
