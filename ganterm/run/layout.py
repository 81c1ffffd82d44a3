"""Where things live in a run directory, and how runs are named and found.

Layout: config.toml (or a user loop's config.json), metrics.jsonl, events.jsonl, status.json, control.jsonl,
samples/, checkpoints/, worker.log, worker.lock (docs/architecture.md has the
contract). Only files named as the run writes them count: a stray
`step_0000300 (copy).png` is not a sample.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ganterm.errors import UserError
from ganterm.run.text import clip

DEFAULT_ROOT = Path("runs")
GRID_KEY = "ganterm-grid"  # PNG text of a sample grid: "images columns rows cell_width cell_height"
GRID_PADDING = 2
_SAMPLE_FILE = re.compile(r"^step_(\d{7,})\.png$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
RUN_NAME_RULE = "letters, digits, '.', '_' and '-', at most 128, not starting with '.'"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def control(self) -> Path:
        return self.path / "control.jsonl"

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def loop_config(self) -> Path:
        """The settings a user's loop gave `ganterm.Run(config=...)`; config.toml stays ganterm's own."""
        return self.path / "config.json"

    @property
    def log(self) -> Path:
        return self.path / "worker.log"

    @property
    def lock(self) -> Path:
        return self.path / "worker.lock"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def sample_files(self) -> list[Path]:
        """The sample grids the run wrote, oldest first; files it did not write are not its own."""
        return [path for _, path in self.sample_steps()]

    def sample_steps(self) -> list[tuple[int, Path]]:
        if not self.samples.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in self.samples.iterdir() if (m := _SAMPLE_FILE.match(p.name)))

    def exists(self) -> bool:
        return any(p.exists() for p in (self.metrics, self.status, self.config, self.checkpoints))


def check_run_name(name: str, what: str = "run name") -> str:
    """A run name is a plain, safe folder name: it is a path component, a shell word and a terminal string."""
    if not _RUN_NAME.match(name):
        # 160: a name a few characters past the limit is said whole
        raise UserError(f"{what} {clip(name, 160)!r} is not a valid run name: use {RUN_NAME_RULE}")
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(text).name or text).strip("-").lower() or "run"


def new_run_name(data_name: str, root: Path) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{_slug(data_name)}-{stamp}"
    name, n = base, 2
    while (root / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def claim_new_run(root: Path, name: str | None, data_name: str) -> RunDir | None:
    """A new run's folder under `root`, checked and claimed in one step: of two starts racing for it, one gets it.

    Without a `name` a fresh one is made from `data_name` and the time (`new_run_name`), and one another start
    takes meanwhile is passed over; a given `name` that is taken gives None. The claim is the exclusive creation
    of an empty metrics.jsonl, so the folder itself may be there already (made by hand, or holding only the
    `nodes/` of a multi-machine run whose other machine started first).
    """
    while True:
        run = RunDir(root / (name or new_run_name(data_name, root)))
        if _claim(run):
            return run
        if name is not None:
            return None


def _claim(run: RunDir) -> bool:
    if run.exists():
        return False
    run.path.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(run.metrics, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def list_runs(root: Path) -> list[RunDir]:
    """Runs under `root`, oldest first by when their config (or metrics) was written."""
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and RunDir(p).exists()]
    return sorted(runs, key=_started)


def _started(run: RunDir) -> tuple[float, str]:
    for path in (run.config, run.metrics, run.status):
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_mtime, run.name
    return 0.0, run.name


def resolve_run(argument: str | None, root: Path = DEFAULT_ROOT) -> RunDir:
    """A run from a name under `root`, a path, or None for the newest run."""
    if argument is None:
        runs = list_runs(root)
        if not runs:
            raise UserError(f"there are no runs under {root}/ yet; start one with: ganterm train")
        return runs[-1]
    for candidate in (Path(argument).expanduser(), root / argument):
        if candidate.is_dir() and RunDir(candidate).exists():
            return RunDir(candidate)
    known = [r.name for r in list_runs(root)]
    hint = f" (runs there: {', '.join(known[-5:])})" if known else ""
    raise UserError(f"no run named {argument!r} under {root}/ and no run directory at that path{hint}")
