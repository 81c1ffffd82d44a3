"""Reading a run, whatever wrote it: `open_run(path)` is the one public, torch-free way in.

Users script over their runs with it instead of parsing files:

    import ganterm
    run = ganterm.open_run("runs/faces")
    run.status()["state"], run.history()["loss_d"], run.events("alert"), run.samples()[-1]

The dashboard, export and listing are its clients. A source is picked by what
is on disk: a ganterm run folder (the worker's or `ganterm.Run`'s) first, then
a StyleGAN training folder (it holds event files too, with the same numbers,
so its own reader comes before TensorBoard's), then TensorBoard event files.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganterm.errors import UserError
from ganterm.run.layout import DEFAULT_ROOT, RunDir, list_runs, resolve_run
from ganterm.sources.follow import RunReader
from ganterm.sources.foreign import ForeignReader, ForeignRows, ForeignRun, ReaderFactory
from ganterm.sources.ganterm_run import GantermRun, PinnedRows
from ganterm.sources.roles import load_roles, roles_for

__all__ = ["ForeignRun", "GantermRun", "Pinned", "Reader", "Source", "find_runs", "open_run", "open_runs"]

Source = GantermRun | ForeignRun
Reader = RunReader | ForeignReader  # what `follow()` gives: `poll()` → RunUpdate, `close()`
Pinned = PinnedRows | ForeignRows  # what `pinned_rows()` gives: the rows an export writes


@dataclass(frozen=True)
class Format:
    """Another tool's log format: how to find its runs under a folder, and how to read one."""

    kind: str
    find: Callable[[Path], list[Path]]  # the run folders at or under a path, as `tensorboard --logdir` finds them
    reader: ReaderFactory


# module, finder, reader class of each format, in the order a folder is claimed
FORMAT_MODULES = (
    ("stylegan", "ganterm.sources.stylegan", "find_stylegan_runs", "StyleganReader"),
    ("tensorboard", "ganterm.sources.tfevents", "find_event_runs", "TfeventsReader"),
)


MISSING: dict[str, str] = {}  # format -> the module its reader needs and could not import


def formats() -> list[Format]:
    """The formats whose readers are installed, imported on first use (a ganterm run needs none of them).

    A reader whose own dependency is missing is left out, not fatal: `ganterm runs` still lists the others,
    and a folder no reader could claim says what is missing.
    """
    found = []
    for kind, module_name, finder, reader in FORMAT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                MISSING[kind] = str(error.name)
            continue
        found.append(Format(kind, getattr(module, finder), getattr(module, reader)))
    return found


def open_run(path: str | Path, root: str | Path = DEFAULT_ROOT, roles: str | Path | None = None) -> Source:
    """The run at `path` (a folder, or a run name under `root`); one sentence when there is none.

    `roles`: a roles file for a run another tool wrote (else its own ganterm-roles.toml, if any).
    """
    for candidate in (Path(path).expanduser(), Path(root) / path):
        if not candidate.is_dir():
            continue
        if RunDir(candidate).exists():
            return GantermRun(RunDir(candidate))
        runs = foreign_runs(candidate, roles)
        here = [run for run in runs if run.path.resolve() == candidate.resolve()]
        if here:
            return here[0]
        if runs:
            names = ", ".join(str(run.path.relative_to(candidate)) for run in runs[:5])
            raise UserError(
                f"{str(candidate)!r} holds {len(runs)} runs ({names}{', ...' if len(runs) > 5 else ''}): "
                "name one, or watch them all with: ganterm watch " + str(candidate)
            )
    try:
        return GantermRun(resolve_run(str(path), Path(root)))
    except UserError as error:
        if not MISSING or not Path(path).expanduser().is_dir():
            raise
        missing = "; ".join(f"reading {kind} runs needs {module}, which is not installed" for kind, module in
                            MISSING.items())  # fmt: skip
        raise UserError(f"{error} ({missing})") from None


def foreign_runs(folder: Path, roles: str | Path | None = None) -> list[ForeignRun]:
    """The runs other tools wrote at or under `folder`, each claimed by the first format that finds it."""
    given = None if roles is None else load_roles(Path(roles))
    claimed: dict[Path, ForeignRun] = {}
    for fmt in formats():
        for run_folder in fmt.find(folder):
            key = run_folder.resolve()
            if key not in claimed and not RunDir(run_folder).exists():
                roles_here = given or roles_for(run_folder)
                claimed[key] = ForeignRun(run_folder, fmt.reader, fmt.kind, roles_here, _name_under(run_folder, folder))
    return sorted(claimed.values(), key=lambda run: str(run.path))


def _name_under(run_folder: Path, folder: Path) -> str:
    """A run's path under the folder searched (`exp1/seed1`), as TensorBoard names runs; '' for the folder itself."""
    try:
        name = run_folder.relative_to(folder).as_posix()
    except ValueError:  # a finder that resolved a link out of the folder: its own name
        return ""
    return "" if name == "." else name


def find_runs(folder: str | Path, roles: str | Path | None = None) -> list[Source]:
    """Every run at or under `folder`: ganterm's run folders in it, then the runs other tools wrote there."""
    folder = Path(folder).expanduser()
    if RunDir(folder).exists():
        return [GantermRun(RunDir(folder))]
    ganterm_runs: list[Source] = [GantermRun(run) for run in list_runs(folder)]
    return ganterm_runs + list(foreign_runs(folder, roles))


def open_runs(
    arguments: list[str] | None, root: str | Path = DEFAULT_ROOT, roles: str | Path | None = None
) -> list[Source]:
    """The runs a command line names: each argument a run, or a folder of runs (every run at or under it, as
    `tensorboard --logdir` takes it); the newest run under `root` when there is none."""
    if not arguments:
        return [GantermRun(resolve_run(None, Path(root)))]
    sources: list[Source] = []
    for argument in arguments:
        folder = Path(argument).expanduser()
        if folder.is_dir() and not RunDir(folder).exists() and (found := find_runs(folder, roles)):
            sources += found
        else:
            sources.append(open_run(argument, root, roles))
    return sources
