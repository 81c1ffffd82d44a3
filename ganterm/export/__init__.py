"""Every number a run logged, out to the formats other tools read: CSV, Parquet, TensorBoard event files.

Torch-free, like the viewers: it reads runs through `ganterm.sources` only (and
keeps tensorboardX from loading torch). Each run's metrics.jsonl is streamed
(`PinnedRows`), never held whole; what is written goes to a temporary name and
is renamed into place, so a failed export leaves the old output as it was.
The generator export needs torch and lives in `training.checkpoint`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ganterm.errors import UserError
from ganterm.sources import Pinned, Source

SUFFIX = {"csv": ".csv", "parquet": ".parquet"}
# the module each format needs beyond ganterm's own dependencies, and the extra that installs it
EXTRAS = {"parquet": ("pyarrow", "parquet"), "tensorboard": ("tensorboardX", "tensorboard")}
PASSES = {"csv": 2, "parquet": 2, "tensorboard": 1}  # reads of each metrics file: tables find their columns first


@dataclass
class Exported:
    """What was written, for the one line the CLI prints."""

    rows: int = 0
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def require_extra(fmt: str) -> None:
    """Before anything is read or written: the writer of `fmt` is installed, or one sentence says how to get it."""
    if fmt not in EXTRAS:
        return
    from ganterm.sources.tfevents_decode import import_tensorboardx

    module, extra = EXTRAS[fmt]
    try:
        import_tensorboardx() if fmt == "tensorboard" else importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"--format {fmt} needs {module}, which is not installed; install it with: pip install 'ganterm[{extra}]'"
        ) from None


def open_histories(runs: list[Source]) -> list[Pinned]:
    """Each run's metrics as they stand now; runs are told apart by name, so a name may come only once."""
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise UserError(f"two of the runs given are named {run.name!r}; the export tells runs apart by name")
        seen.add(run.name)
    return [run.pinned_rows() for run in runs]


def work_bytes(histories: list[Pinned], fmt: str) -> int:
    """Bytes the export reads in all, for a progress bar."""
    return PASSES[fmt] * sum(history.size for history in histories)


def export_history(histories: list[Pinned], fmt: str, target: Path, advance: Callable[[int], None]) -> Exported:
    """Write the histories as `fmt` to `target` (a file for tables, a folder of run folders for TensorBoard)."""
    from ganterm.export import table, tensorboard

    exported = Exported()
    if fmt == "csv":
        exported.columns = table.write_csv(histories, target, advance)
        exported.notes = table.shadowed_notes(histories)
    elif fmt == "parquet":
        exported.columns = table.write_parquet(histories, target, advance)
        exported.notes = table.shadowed_notes(histories)
    else:
        exported.notes = tensorboard.write_event_folders(histories, target, advance)
    exported.rows = sum(history.rows for history in histories)
    exported.notes = [note for history in histories if (note := history.skipped_note())] + exported.notes
    return exported
