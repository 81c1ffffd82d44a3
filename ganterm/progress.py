"""Following a run without the dashboard: a Rich progress bar in a terminal,
plain periodic log lines when stdout is a pipe or a file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from ganterm.run.jsonl import JsonlTail
from ganterm.run.layout import RunDir
from ganterm.run.schema import stats_line
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status

LINES_PER_RUN = 20  # plain mode prints about this many progress lines over a whole run


@dataclass
class Snapshot:
    """What the follower knows of a run right now."""

    state: str = "unknown"
    step: int = 0
    total: int = 0
    row: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    first: tuple[int, float] | None = None  # (step, time) first seen, for the ETA

    def eta_seconds(self) -> float | None:
        if self.first is None or not self.row or self.step <= self.first[0]:
            return None
        rate = (self.step - self.first[0]) / max(self.row["t"] - self.first[1], 1e-9)
        return (self.total - self.step) / rate if rate > 0 else None

    def stats(self) -> str:
        return stats_line(self.row)


class Follower:
    """Tails a run's status and metrics."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.metrics = JsonlTail(run.metrics)
        self.snapshot = Snapshot()

    def poll(self) -> Snapshot:
        snap = self.snapshot
        if self.metrics.reset:
            snap.first = None
        for record in self.metrics.read():
            if "loss_d" in record or "loss_g" in record:
                snap.row = record
                if snap.first is None:
                    snap.first = (int(record.get("step", 0)), float(record.get("t", time.time())))
        status = read_status(self.run) or {}
        snap.status = status
        snap.state = effective_state(status)
        snap.step = int(status.get("step", snap.row.get("step", 0)) or 0)
        snap.total = int(status.get("total", 0) or 0)
        return snap

    @property
    def active(self) -> bool:
        return self.snapshot.state in ACTIVE_STATES


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def follow_plain(run: RunDir, console: Console, interval: float = 1.0) -> Snapshot:
    """Log lines for pipes and files: a line per state change and per ~5% of progress."""
    follower = Follower(run)
    printed_state, printed_step = "", -1
    while True:
        snap = follower.poll()
        every = max(1, snap.total // LINES_PER_RUN)
        if snap.row and snap.step // every != printed_step // every:
            percent = 100 * snap.step / max(snap.total, 1)
            console.print(
                f"{run.name}: step {snap.step}/{snap.total} ({percent:.0f}%)  {snap.stats()}  "
                f"ETA {clock(snap.eta_seconds())}",
                highlight=False,
            )
            printed_step = snap.step
        if snap.state != printed_state:
            console.print(f"{run.name}: {snap.state} at step {snap.step}/{snap.total}", highlight=False)
            printed_state = snap.state
        if not follower.active:
            return snap
        time.sleep(interval)


def follow_rich(run: RunDir, console: Console, interval: float = 0.25) -> Snapshot:
    """A live progress bar for a terminal; Ctrl-C reaches the caller."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    follower = Follower(run)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}[/] {task.fields[state]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[stats]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(run.name, total=None, state="starting", eta="--:--", stats="")
        while True:
            snap = follower.poll()
            progress.update(
                task,
                completed=snap.step,
                total=snap.total or None,
                state=snap.state,
                eta=clock(snap.eta_seconds()),
                stats=snap.stats(),
            )
            if not follower.active:
                return snap
            time.sleep(interval)
