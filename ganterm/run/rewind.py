"""Going back to a checkpoint: forget the record of what came after it."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

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
