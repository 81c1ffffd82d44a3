"""Reading a run, whatever wrote it: `open_run(path)` is the one public, torch-free way in.

Users script over their runs with it instead of parsing files:

    import ganterm
    run = ganterm.open_run("runs/faces")
    run.status()["state"], run.history()["loss_d"], run.events("alert"), run.samples()[-1]

The dashboard, export and listing are its clients. A source is picked by what
is on disk; today that is a ganterm run folder (the worker's or `ganterm.Run`'s),
and readers of other tools' logs plug in beside it.
"""

from __future__ import annotations

from pathlib import Path

from ganterm.run.layout import DEFAULT_ROOT, resolve_run
from ganterm.sources.ganterm_run import GantermRun

__all__ = ["GantermRun", "open_run"]


def open_run(path: str | Path, root: str | Path = DEFAULT_ROOT) -> GantermRun:
    """The run at `path` (a folder, or a run name under `root`); one sentence when there is none."""
    return GantermRun(resolve_run(str(path), Path(root)))
