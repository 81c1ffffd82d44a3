"""Following a run without the dashboard: a Rich progress bar in a terminal,
plain periodic log lines when stdout is a pipe or a file; the run's texts
(its name, its state) printed `visible`, as the CLI prints them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from ganterm.run.jsonl import ROW_RULE, JsonlTail, valid_row
from ganterm.run.layout import RunDir
from ganterm.run.schema import stats_line
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status
from ganterm.run.text import visible

LINES_PER_RUN = 20  # plain mode prints about this many progress lines over a whole run
ETA_WINDOW = 200  # logged steps the rate is taken over: recent enough to follow a slowdown or a pause


def eta_seconds(steps: Sequence[float], seconds: Sequence[float], total: int) -> float | None:
    """Seconds until step `total` at the rate of the last ETA_WINDOW logged steps; None when unknown.

    `steps` and `seconds` are the logged steps and their wall-clock times, oldest first. Every
    viewer computes its ETA here, so the dashboard and `ganterm train --follow` agree.
    """
    if len(steps) < 2 or not total:
        return None
    back = min(len(steps) - 1, ETA_WINDOW)
    rate = float(steps[-1] - steps[-1 - back]) / max(float(seconds[-1] - seconds[-1 - back]), 1e-9)
    return max(0.0, (total - int(steps[-1])) / rate) if rate > 0 else None


@dataclass
class Snapshot:
    """What the follower knows of a run right now."""

    state: str = "unknown"
    step: int = 0
    total: int = 0
    row: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    times: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=ETA_WINDOW + 1))

    def eta_seconds(self) -> float | None:
        return eta_seconds([step for step, _ in self.times], [t for _, t in self.times], self.total)

    def stats(self) -> str:
        return stats_line(self.row)


class Follower:
    """Tails a run's status and metrics."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.metrics = JsonlTail(run.metrics)
        self.snapshot = Snapshot()
        self._unreadable = 0
        self._noted = False
        self.skipped = 0  # lines of metrics.jsonl left out: unreadable, or not a valid row (ROW_RULE)

    def poll(self) -> Snapshot:
        snap = self.snapshot
        if self.metrics.reset:
            snap.times.clear()
        records = self.metrics.read()
        rows = [record for record in records if valid_row(record)]
        self.skipped += len(records) - len(rows) + self.metrics.bad_lines - self._unreadable
        self._unreadable = self.metrics.bad_lines
        for record in rows:
            if "loss_d" in record or "loss_g" in record:
                snap.row = record
            snap.times.append((int(record["step"]), float(record["t"])))  # as the dashboard's "t" series holds them
        status = read_status(self.run) or {}
        snap.status = status
        snap.state = effective_state(status)
        snap.step = int(status.get("step", snap.row.get("step", 0)) or 0)
        snap.total = int(status.get("total", 0) or 0)
        return snap

    @property
    def active(self) -> bool:
        return self.snapshot.state in ACTIVE_STATES

    def skipped_note(self) -> str | None:
        """Once, when the first malformed lines turn up: a line saying they are left out, and why."""
        if not self.skipped or self._noted:
            return None
        self._noted = True
        return (
            f"{self.run.name}: left out {self.skipped} malformed line(s) of metrics.jsonl (a row needs {ROW_RULE}); "
            "later ones are left out silently"
        )


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def follow_plain(run: RunDir, console: Console, interval: float = 1.0) -> Snapshot:
    """Log lines for pipes and files: a line per state change and per ~5% of progress.

    The end (finished, stopped, failed) is left to the caller, which says it once, in this form.
    """
    follower = Follower(run)
    printed_state, printed_step = "", -1
    while True:
        snap = follower.poll()
        every = max(1, snap.total // LINES_PER_RUN)
        if snap.row and snap.step // every != printed_step // every:
            percent = 100 * snap.step / max(snap.total, 1)
            console.print(
                visible(
                    f"{run.name}: step {snap.step}/{snap.total} ({percent:.0f}%)  {snap.stats()}  "
                    f"ETA {clock(snap.eta_seconds())}"
                ),
                highlight=False,
                markup=False,
            )
            printed_step = snap.step
        if note := follower.skipped_note():
            console.print(visible(note), highlight=False, markup=False)
        if not follower.active:
            return snap
        if snap.state != printed_state:
            console.print(
                visible(f"{run.name}: {snap.state} at step {snap.step}/{snap.total}"), highlight=False, markup=False
            )
            printed_state = snap.state
        time.sleep(interval)


def follow_rich(run: RunDir, console: Console, interval: float = 0.25) -> Snapshot:
    """A live progress bar for a terminal; Ctrl-C reaches the caller."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    follower = Follower(run)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold", markup=False),  # the run's name: never markup
        TextColumn("{task.fields[state]}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[stats]}", markup=False),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(visible(run.name), total=None, state="starting", eta="--:--", stats="")
        while True:
            snap = follower.poll()
            progress.update(
                task,
                completed=snap.step,
                total=snap.total or None,
                state=visible(snap.state),
                eta=clock(snap.eta_seconds()),
                stats=snap.stats(),
            )
            if note := follower.skipped_note():
                progress.console.print(visible(note), highlight=False, markup=False)
            if not follower.active:
                return snap
            time.sleep(interval)
