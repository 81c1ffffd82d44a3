"""Going back to a checkpoint: forget the record of what came after it, and set its later checkpoints aside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from ganterm.run.checkpoints import LATEST, point_latest, step_files
from ganterm.run.layout import RunDir


def rewind(run: RunDir, step: int) -> None:
    """Forget what came after `step` (resuming from a checkpoint at `step`).

    Metrics rows past it are cut off, so a resumed run logs each step once;
    sample grids past it are deleted, since they show weights that no longer
    exist. Events stay: they are the run's history, crash included.
    """
    if run.metrics.exists():
        cut = _first_offset_after(run.metrics, step)
        if cut is not None:
            os.truncate(run.metrics, cut)
    for sample_step, path in run.sample_steps():
        if sample_step > step:
            path.unlink(missing_ok=True)


def _first_offset_after(path: Path, step: int) -> int | None:
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                record = orjson.loads(line)
                later = isinstance(record, dict) and int(record.get("step", 0)) > step
            except (orjson.JSONDecodeError, TypeError, ValueError):
                later = not line.endswith(b"\n")  # a torn last line goes too
            if later:
                return offset
            offset += len(line)
    return None


def abandon_after(run: RunDir, step: int) -> Path | None:
    """Make `step` the branch point: move later step files into `checkpoints/abandoned-<time>/`.

    Resuming from an older checkpoint starts a new history from it; the newer
    files belong to the old one. Left in place, pruning (which keeps the
    highest steps) would delete the new branch's files first, and `latest`,
    `ganterm sample` and the next `--resume` would jump back to the old one.
    They are moved, not deleted: the user chose to go back, not to destroy.
    Returns the folder they went to, or None when there were none.
    """
    later = [path for file_step, path in step_files(run.checkpoints) if file_step > step]
    folder = None
    if later:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = run.checkpoints / f"abandoned-{stamp}"
        suffix = 1
        while folder.exists():  # two rollbacks in one second
            suffix += 1
            folder = run.checkpoints / f"abandoned-{stamp}-{suffix}"
        folder.mkdir()
        for path in later:
            os.replace(path, folder / path.name)
    kept = step_files(run.checkpoints)
    if kept:
        point_latest(run.checkpoints, kept[-1][1])
    else:
        (run.checkpoints / LATEST).unlink(missing_ok=True)
    return folder
