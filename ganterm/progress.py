"""Following a run without the dashboard: a Rich progress bar in a terminal,
plain periodic log lines when stdout is a pipe or a file; the run's texts
(its name, its state) printed `visible`, as the CLI prints them.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ganterm.run.jsonl import ROW_RULE, JsonlTail, valid_row
from ganterm.run.layout import RunDir
from ganterm.run.schema import stats_line
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status
from ganterm.run.text import visible

if TYPE_CHECKING:
    from ganterm.notify import Notifier
    from ganterm.sources.follow import RunUpdate
    from ganterm.sources.foreign import ForeignReader, ForeignRun
    from ganterm.sources.new_runs import NewRuns

LINES_PER_RUN = 20  # plain mode prints about this many progress lines over a whole run
ETA_WINDOW = 200  # logged steps the rate is taken over: recent enough to follow a slowdown or a pause
READ_ONLY_LINE_SECONDS = 30.0  # a read-only run has no total to count 5% of: a progress line at most this often


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


@dataclass
class ReadOnlyLines:
    """What the plain lines of a read-only run have said so far, and what they say of each poll."""

    name: str
    say: Callable[[str], None]
    opened: float  # alerts raised before are the history's
    latest: dict[str, float] = field(default_factory=dict)  # each metric's newest value
    step: int | None = None
    state: str = ""
    printed_step: int | None = None
    printed_at: float = float("-inf")
    history_alerts: list[dict[str, Any]] = field(default_factory=list)
    corrupt_said: bool = False

    def take(self, update: RunUpdate, new_alert: Callable[[dict[str, Any]], None]) -> None:
        if update.reset:
            self.latest.clear()
        from ganterm.sources.columns import newest_step

        columns = {name: pair for name, pair in update.columns.items() if name != "t"}  # t: the steps' wall time
        self.latest.update({name: float(values[-1]) for name, (steps, values) in columns.items() if len(steps)})
        if (newest := newest_step(columns)) is not None:
            self.step = max(self.step or 0, newest)
        if self.step is None:  # only history so far: its newest step
            self.step = newest_step(update.history)
        if update.status is not None:
            self._state(update.status)
        for event in update.events:
            if event.get("kind") != "alert":
                continue
            if event.get("t", 0) > self.opened:
                self.say(f"{self.name}: alert at step {event.get('step')}: {event.get('message', event.get('check'))}")
                new_alert(event)
            else:
                self.history_alerts.append(event)
        if self.history_alerts and not update.more:
            last = self.history_alerts[-1]
            count = len(self.history_alerts)
            self.say(f"{self.name}: {count} alert{'s' if count > 1 else ''} over its history, the last at step "
                     f"{last.get('step')}: {last.get('message', last.get('check'))}")  # fmt: skip
            self.history_alerts = []
        if update.skipped and not self.corrupt_said:
            self.corrupt_said = True
            self.say(f"{self.name}: passed over {update.skipped} corrupt record(s) of its files; later ones silently")
        self._progress()

    def _state(self, status: dict[str, Any]) -> None:
        from ganterm.sources.foreign import idle_since

        state = str(status.get("state", "unknown"))
        if state == self.state:
            return
        self.state = state
        since = idle_since(state, status.get("since"))
        where = ", no step yet" if self.step is None else f" at step {self.step}"
        self.say(f"{self.name}: {state}{f' since {since}' if since else ''}{where}")

    def _progress(self) -> None:
        now = time.monotonic()
        if self.step is None or self.step == self.printed_step or now - self.printed_at < READ_ONLY_LINE_SECONDS:
            return
        values = stats_line(self.latest) or "  ".join(f"{name} {value:.4g}" for name, value in
                                                      sorted(self.latest.items())[:4])  # fmt: skip
        self.say(f"{self.name}: step {self.step}  {values}".rstrip())
        self.printed_step, self.printed_at = self.step, now


@dataclass
class ReadOnlyFollow:
    """One read-only run followed for the plain lines: its reader, what was said, where its alerts go."""

    run: ForeignRun
    reader: ForeignReader
    lines: ReadOnlyLines
    notifier: Notifier | None

    def poll(self) -> bool:
        """Reads what came and says it; whether more history is still to read."""
        update = self.reader.poll()
        self.lines.take(update, self.push)
        return update.more

    def push(self, alert: dict[str, Any]) -> None:
        if self.notifier is not None:
            self.notifier.alert(int(alert.get("step", 0)), alert)

    def close(self) -> None:
        from ganterm.notify import VIEWER_CLOSE_SECONDS

        self.reader.close()
        if self.notifier is not None:
            self.notifier.close(VIEWER_CLOSE_SECONDS)


def follow_read_only(
    runs: list[ForeignRun],
    console: Console,
    interval: float = 1.0,
    notify_url: str = "",
    new_runs: NewRuns | None = None,
) -> None:
    """Log lines for runs another tool writes, for pipes, files and --no-dashboard: each run's state as it
    changes (live, idle since when), its newest values now and then, the alerts the health checks raise on it
    (pushed to `notify_url` too: only a viewer sees them), and runs that appear in `new_runs`' folders. Such a
    run never ends for ganterm: Ctrl-C (or SIGTERM, how a nohup job is ended) ends the watch."""
    from ganterm.notify import Notifier
    from ganterm.run.status import this_host

    def say(line: str) -> None:
        console.print(visible(line), highlight=False, markup=False)

    def start(run: ForeignRun) -> ReadOnlyFollow:
        say(f"{run.name}: watching it read-only ({run.writer} writes it): it never finishes for ganterm, "
            "so the watch goes on until Ctrl-C")  # fmt: skip
        reader = run.follow()
        notifier = Notifier(notify_url, run.name, this_host(), say) if notify_url else None
        return ReadOnlyFollow(run, reader, ReadOnlyLines(run.name, say, reader.opened), notifier)

    followed: list[ReadOnlyFollow] = []
    in_main = threading.current_thread() is threading.main_thread()  # where a signal handler may be set
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None  # kill: Ctrl-C's end
    try:
        followed += [start(run) for run in runs]
        while True:
            more = [follow.poll() for follow in followed]
            for run in new_runs.poll() if new_runs is not None else []:
                if run.read_only:
                    say(f"{run.name}: a new run in the watched folder")
                    followed.append(start(run))
            time.sleep(0.02 if any(more) else interval)  # more: a history is still being read
    except KeyboardInterrupt:
        for follow in followed:
            where = "" if follow.lines.step is None else f" at step {follow.lines.step}"
            say(f"{follow.run.name}: left{where}; its writer goes on")
    finally:
        for follow in followed:
            follow.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
