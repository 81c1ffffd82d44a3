"""`ganterm watch`: the Textual app that tails run directories and drives the worker.

One background thread reads every watched run directory (new bytes only) and
posts what changed; the screen redraws on a steady timer, so a slow disk or a
busy worker never blocks a key press. The app owns the state (the watched runs
and the reactive fields below) and binds it into the `Header` and the
`PlotGrid`, which redraw in their watchers. The app never imports torch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import var
from textual.widgets import Footer, RichLog
from textual.worker import get_current_worker

from ganterm.dashboard.gpu import gpu_usage
from ganterm.dashboard.header import Header, Headline
from ganterm.dashboard.plot_grid import PlotGrid
from ganterm.dashboard.plots import RUN_COLOURS, UNPLACED_WHY, X_AXES, PlottedRun, View
from ganterm.dashboard.series import SeriesStore
from ganterm.dashboard.widgets import AlertsPanel, SamplesPanel, ending_text
from ganterm.errors import UserError
from ganterm.families import family_of
from ganterm.notify import VIEWER_CLOSE_SECONDS, Notifier
from ganterm.run import control
from ganterm.run.jsonl import ROW_RULE
from ganterm.run.layout import RunDir, list_runs
from ganterm.run.status import ACTIVE_STATES, effective_state, this_host
from ganterm.sources import GantermRun, Reader, Source
from ganterm.sources.follow import RunUpdate
from ganterm.sources.foreign import ForeignRun, read_only_reason
from ganterm.sources.new_runs import NewRuns

SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)
ZOOM_WINDOWS = (None, 500, 2_000, 10_000)
HISTORY_REDRAW_SECONDS = 1.0
LOG_NAMES = {"ganterm": "worker.log", "stylegan": "log.txt"}  # the log panel's title: the file it shows
# what the worker keys say they asked for; every name is one of control.COMMANDS (a test checks both ways)
ASKED = {
    "pause": "asked the worker to pause",
    "unpause": "asked the worker to continue",
    "stop": "asked the worker to checkpoint and stop",
    "checkpoint": "asked the worker for a checkpoint",
    "snapshot": "asked the worker for a sample grid",
}


WORKER_KEYS = {"pause": "pause", "checkpoint": "checkpoint", "sample": "snapshot", "stop": "stop"}  # action: command


class RunUpdated(Message):
    """The reader thread found something new in a run directory."""

    def __init__(self, key: str, update: RunUpdate) -> None:
        super().__init__()
        self.key = key
        self.update = update


class RunsAppeared(Message):
    """The reader thread found runs under a watched logdir that were not there when the viewer opened."""

    def __init__(self, runs: list[Source]) -> None:
        super().__init__()
        self.runs = runs


@dataclass
class WatchedRun:
    """Everything the viewer knows of one run; touched only on the app thread (the reader aside)."""

    source: Source
    colour: str
    reader: Reader
    store: SeriesStore = field(default_factory=SeriesStore)
    status: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    loading: bool = True
    skipped: int = 0  # malformed or unreadable lines of its metrics and events, left out
    settings: dict[str, Any] = field(default_factory=dict)  # its config, as dotted keys

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def state(self) -> str:
        if self.source.read_only:  # another tool writes it: live or idle, from its file times
            return str(self.status.get("state", "unknown"))
        if self.status:
            return effective_state(self.status)
        return "external" if self.store.rows else "unknown"


class Dashboard(App[str]):
    """Returns "stopped" when the user stopped training from the viewer, else "left"."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "ganterm"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("p", "pause", "pause"),
        Binding("c", "checkpoint", "checkpoint"),
        Binding("g", "sample", "sample"),
        Binding("x", "stop", "stop"),
        Binding("s", "smoothing", "smooth"),
        Binding("l", "log_scale", "log"),
        Binding("z", "zoom", "zoom"),
        Binding("a", "x_axis", "x axis"),
        Binding("e", "spread", "raw spread", show=False),
        Binding("left_square_bracket", "older_samples", "older samples", key_display="[", show=False),
        Binding("right_square_bracket", "newer_samples", "newer samples", key_display="]", show=False),
        Binding("n", "next_run", "next run", show=False),
        Binding("N", "previous_run", "previous run", show=False),
        Binding("r", "pick_runs", "runs"),
        Binding("w", "toggle_log", "worker log", show=False),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "interrupt", "quit, maybe stop", show=False, priority=True),
    ]

    # the state the header and the plot grid are bound to (the watched runs' points live in their stores)
    view: var[View] = var(View)
    headline: var[Headline] = var(Headline)
    runs: var[tuple[PlottedRun, ...]] = var(tuple)
    data_version: var[int] = var(0)  # bumped when the runs' stores have new points to draw

    def __init__(
        self,
        runs: list[RunDir] | list[Source],
        root: Path,
        refresh_per_second: float = 4.0,
        notify_url: str = "",
        new_runs: NewRuns | None = None,
    ) -> None:
        """`new_runs`: where to look for runs that appear later under the folders given whole (a --logdir)."""
        super().__init__()
        self.root = root
        self.refresh_interval = 1.0 / refresh_per_second
        self.watched: dict[str, WatchedRun] = {}
        self._dirty = True
        self._last_state = ""
        self._drawn_at = 0.0
        self._opened = time.time()
        self._laid_out = False
        self.notify_url = notify_url  # where a read-only run's alerts go: no writer of ganterm's pushes them
        self._notifiers: dict[str, Notifier] = {}
        self.new_runs = new_runs
        self._show([GantermRun(run) if isinstance(run, RunDir) else run for run in runs])

    # ----- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(id="header").data_bind(Dashboard.headline, Dashboard.view)
        with Horizontal(id="body"):
            yield PlotGrid(id="plots").data_bind(Dashboard.runs, Dashboard.view, Dashboard.data_version)
            with Vertical(id="side"):
                yield SamplesPanel(id="samples")
                yield AlertsPanel(id="alerts")
                yield RichLog(id="log", max_lines=300, wrap=False, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._laid_out = True
        self.query_one("#alerts").border_title = "alerts"
        self.query_one("#log").border_title = LOG_NAMES.get(self.primary.source.kind, "log")
        self.query_one("#samples").border_title = "samples"
        # the screen owns the timer, so it stops with the widgets it draws (an app's timers outlive them at exit)
        self.screen.set_interval(self.refresh_interval, self._redraw)
        # the first, bounded read of the primary run happens here, so the first frame already has its
        # points; the reader thread takes over from there (started first, it would compete with that frame)
        key, primary = next(iter(self.watched.items()))
        self.on_run_updated(RunUpdated(key, primary.reader.poll()))
        self._read_runs()
        self._redraw()

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size  # the new size: self.size still holds the old one here
        self.screen.set_class(width < 110, "narrow")
        self.screen.set_class(width < 72 or height < 22, "tiny")
        self._dirty = True

    # ----- reading ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="reader")
    def _read_runs(self) -> None:
        """The one reader thread: polls every watched run, faster while history is still loading."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            busy = False
            for key, watched in list(self.watched.items()):
                update = watched.reader.poll()
                busy |= update.more
                if update or watched.loading:
                    self.post_message(RunUpdated(key, update))
            new_runs = self.new_runs  # the app thread drops it when the user picks other runs
            if new_runs is not None and (appeared := new_runs.poll()):
                self.post_message(RunsAppeared(appeared))
            time.sleep(0.02 if busy else self.refresh_interval)  # busy: history is still being parsed
        for watched in list(self.watched.values()):
            watched.reader.close()

    def on_run_updated(self, message: RunUpdated) -> None:
        watched = self.watched.get(message.key)
        if watched is None:
            return  # a run the user switched away from
        update = message.update
        first_points = watched.store.rows == 0 and update.rows > 0
        if update.reset:
            watched.store = SeriesStore()
        watched.store.add_columns(update.columns, update.rows)
        if update.history_rows:
            watched.store.add_columns(update.history, update.history_rows, history=True)
        watched.loading = update.more
        if update.status is not None:
            watched.status = update.status
        if update.settings is not None:
            watched.settings, self._dirty = update.settings, True
        for event in update.events:
            self._on_event(watched, event)
        if update.skipped:
            if not watched.skipped:
                self._say_skipped(watched, update.skipped)
            watched.skipped += update.skipped
        if watched is self.primary:
            if update.log_lines:
                log = self.query_one("#log", RichLog)
                for line in update.log_lines:
                    log.write(line)
            if update.samples is not None:
                watched.samples = update.samples
                self.query_one(SamplesPanel).set_files(update.samples)
        # status beats every 2 s: only new points are worth a redraw of every plot
        if update.rows or update.history_rows or update.reset or update.events:
            self._dirty = True
        if first_points and watched is self.primary and self._laid_out:
            self._redraw()  # the first points of a run go on screen now, not at the next tick

    def on_runs_appeared(self, message: RunsAppeared) -> None:
        """Runs new under a watched logdir join the view, each in a colour of its own, said in one line."""
        if self.new_runs is None:
            return  # the user picked other runs meanwhile
        watched = dict(self.watched)  # a new dict: the reader thread goes on with the one it holds
        for run in message.runs:
            watched[str(run.path)] = WatchedRun(run, RUN_COLOURS[len(watched) % len(RUN_COLOURS)], run.follow())
        self.watched, self._dirty = watched, True
        self.sub_title = ", ".join(w.name for w in watched.values())
        names = ", ".join(run.name for run in message.runs)
        self.notify(f"new run{'s' if len(message.runs) > 1 else ''} in the watched folder: {names}", markup=False)

    def _say_skipped(self, watched: WatchedRun, count: int) -> None:
        """Once per run: lines another writer got wrong are left out, and the viewer goes on."""
        if watched.source.read_only:  # another tool's format: its records, not ganterm's lines
            line = f"viewer: passed over {count} corrupt record(s) of {watched.name}'s files; later ones silently"
        else:
            line = (
                f"viewer: left out {count} malformed line(s) of {watched.name}'s metrics.jsonl or events.jsonl "
                f"(a row needs {ROW_RULE}); later ones are left out silently"
            )
        if watched is self.primary:
            self.query_one("#log", RichLog).write(Text(line, style="yellow"))
        else:
            self.notify(line, severity="warning", markup=False)

    def _on_event(self, watched: WatchedRun, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "alert":
            watched.alerts.append(event)
            if event.get("t", 0) > self._opened:  # raised while the viewer is open: the older ones were on screen
                self._ring(watched, event)
                self._push(watched, event)
        if event.get("ack") and watched is self.primary and event.get("t", 0) > self._opened:
            what = {"checkpoint": "checkpoint written", "sample": "sample grid written"}.get(str(kind))
            self.notify(f"{what or event.get('state', kind)} at step {event.get('step')}", timeout=4, markup=False)

    def _push(self, watched: WatchedRun, alert: dict[str, Any]) -> None:
        """A read-only run's new alert goes to --notify's URL: the viewer raised it, so only the viewer can tell."""
        if not (self.notify_url and watched.source.read_only):
            return
        notifier = self._notifiers.get(watched.name)
        if notifier is None:
            notifier = self._notifiers[watched.name] = Notifier(self.notify_url, watched.name, this_host(), self._warn)
        notifier.alert(int(alert.get("step", 0)), alert)

    def _warn(self, line: str) -> None:
        """What the notifier's thread has to say (a URL that is down), on screen; nothing once the app has ended."""
        with contextlib.suppress(RuntimeError):  # no app loop left to run it on
            self.call_from_thread(self.notify, line, severity="warning", markup=False)

    def on_unmount(self) -> None:
        for notifier in self._notifiers.values():
            notifier.close(VIEWER_CLOSE_SECONDS)

    def _ring(self, watched: WatchedRun, alert: dict[str, Any]) -> None:
        """A new alert rings the terminal's bell and pops up, so it is noticed from another window."""
        self.bell()
        self.notify(
            f"{watched.name}, step {alert.get('step')}: {alert.get('message', alert.get('check'))}",
            title="new alert",
            severity="error" if alert.get("severity") == "error" else "warning",
            timeout=15,
            markup=False,
        )

    # ----- drawing ------------------------------------------------------------------------------

    @property
    def primary(self) -> WatchedRun:
        return next(iter(self.watched.values()))

    def _redraw(self) -> None:
        """Runs on the timer and decides when to redraw; the header and the plot grid decide what."""
        primary = self.primary
        state = primary.state
        if state != self._last_state:
            self._last_state, self._dirty = state, True
            self.refresh_bindings()  # the footer follows what the run takes
        if not self._dirty and state not in ACTIVE_STATES:
            return
        gpu = gpu_usage(primary.status)
        runs = self.plotted_runs()
        unplaced = {axis: tuple(run.name for run in runs if not run.placeable(axis)) for axis in UNPLACED_WHY}
        self.headline = Headline.of(
            primary.name, state, primary.status, primary.store, gpu, len(self.watched), unplaced
        ).told_settings(primary.status, [w.settings for w in self.watched.values()])
        if not self._dirty:
            return  # the clocks in the header tick; the plots wait for data
        loading = any(w.loading for w in self.watched.values())
        if loading and time.monotonic() - self._drawn_at < HISTORY_REDRAW_SECONDS:
            return  # while history pours in, redraw now and then, not on every chunk
        self._dirty = False
        self._drawn_at = time.monotonic()
        with self.batch_update():
            self.runs = tuple(self.plotted_runs())  # a new tuple only when a run was switched or rewound
            self.data_version += 1
            self.query_one(AlertsPanel).show(primary.alerts, ending_text(state, primary.status, primary.name))

    def plotted_runs(self) -> list[PlottedRun]:
        return [
            PlottedRun(w.name, w.store, w.colour, _whole(w.status.get("images_per_step")), family_of(w.status))
            for w in self.watched.values()
        ]

    # ----- runs ---------------------------------------------------------------------------------

    def _show(self, runs: list[Source]) -> None:
        for watched in self.watched.values():
            watched.reader.close()
        self.watched = {
            str(run.path): WatchedRun(run, RUN_COLOURS[i % len(RUN_COLOURS)], run.follow())
            for i, run in enumerate(runs)
        }
        self._opened = time.time()
        self._dirty = True
        self.sub_title = ", ".join(run.name for run in runs)
        if self._laid_out:
            self.query_one("#log").border_title = LOG_NAMES.get(self.primary.source.kind, "log")
            self.query_one("#log", RichLog).clear()
            self.query_one(SamplesPanel).set_files([])

    def _cycle_run(self, offset: int) -> None:
        runs = list_runs(self.root)
        if not runs:
            return
        names = [str(run.path.resolve()) for run in runs]
        current = str(self.primary.source.path.resolve())
        index = names.index(current) if current in names else 0
        self._switch([GantermRun(runs[(index + offset) % len(runs)])])

    def _switch(self, runs: list[Source]) -> None:
        """The runs the user picked, in place of those shown: no more runs join from a watched logdir."""
        self.new_runs = None
        self._show(runs)

    def action_next_run(self) -> None:
        self._cycle_run(1)

    def action_previous_run(self) -> None:
        self._cycle_run(-1)

    def action_pick_runs(self) -> None:
        def chosen(runs: list[RunDir] | None) -> None:
            if runs:
                self._switch([GantermRun(run) for run in runs])

        from ganterm.dashboard.screens import RunPicker  # modal screens load on first use: 40 ms off startup

        showing = [w.source.run for w in self.watched.values() if isinstance(w.source, GantermRun)]
        self.push_screen(RunPicker(self.root, showing), chosen)

    # ----- view keys ----------------------------------------------------------------------------

    def action_smoothing(self) -> None:
        index = SMOOTHING_STEPS.index(self.view.smoothing) if self.view.smoothing in SMOOTHING_STEPS else 0
        self.view = replace(self.view, smoothing=SMOOTHING_STEPS[(index + 1) % len(SMOOTHING_STEPS)])

    def action_log_scale(self) -> None:
        self.view = replace(self.view, log_scale=not self.view.log_scale)

    def action_zoom(self) -> None:
        index = ZOOM_WINDOWS.index(self.view.window)
        self.view = replace(self.view, window=ZOOM_WINDOWS[(index + 1) % len(ZOOM_WINDOWS)])

    def action_x_axis(self) -> None:
        """Step → time → images seen: overlaid runs of other batch sizes or speeds line up on the last two."""
        self.view = replace(self.view, x_axis=X_AXES[(X_AXES.index(self.view.x_axis) + 1) % len(X_AXES)])

    def action_spread(self) -> None:
        self.view = replace(self.view, spread=not self.view.spread)

    def action_older_samples(self) -> None:
        self.query_one(SamplesPanel).step_through(-1)

    def action_newer_samples(self) -> None:
        self.query_one(SamplesPanel).step_through(1)

    def action_toggle_log(self) -> None:
        log = self.query_one("#log", RichLog)
        log.display = not log.display

    def action_help(self) -> None:
        rows = [(binding.key_display or binding.key, binding.description) for binding in self.BINDINGS]
        from ganterm.dashboard.screens import HelpScreen

        self.push_screen(HelpScreen(rows))

    # ----- worker control -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers only the worker keys that act on the primary run: it has a worker, which takes them."""
        command = WORKER_KEYS.get(action)
        return command is None or self._acts(command)

    def on_key(self, event: events.Key) -> None:
        """A worker key the footer hides for this run still answers, with the reason."""
        binding = next((b for b in self.BINDINGS if isinstance(b, Binding) and b.key == event.key), None)
        command = WORKER_KEYS.get(binding.action) if binding else None
        if command is not None and not self._acts(command):
            self._send(command)

    def _acts(self, command: str) -> bool:
        return bool(self.watched) and self.primary.state in ACTIVE_STATES and self._takes(command)

    def _takes(self, command: str) -> bool:
        controls = self.primary.status.get("controls") if self.watched else None
        return not isinstance(controls, list) or command in controls

    def _send(self, command: str) -> bool:
        watched = self.primary
        if isinstance(watched.source, ForeignRun):
            self.notify(read_only_reason(watched.source), severity="warning", markup=False)
            return False
        if watched.state not in ACTIVE_STATES:
            self.notify(
                f"{watched.name} is {watched.state}: there is no worker to {command}",
                severity="warning",
                markup=False,
            )
            return False
        if not self._takes(command):
            self.notify(f"{watched.name} is fed by its own training loop, which does not take {command!r}",
                        severity="warning", markup=False)  # fmt: skip
            return False
        try:
            control.send(watched.source.run, command)
        except UserError as error:  # someone else's run, say: the viewer goes on showing it
            self.notify(str(error), severity="error", timeout=6)
            return False
        self.notify(ASKED[command], timeout=3)
        return True

    def action_pause(self) -> None:
        self._send("unpause" if self.primary.state == "paused" else "pause")

    def action_checkpoint(self) -> None:
        self._send("checkpoint")

    def action_sample(self) -> None:
        self._send("snapshot")

    def action_stop(self) -> None:
        watched = self.primary  # a run without a worker never gets here: check_action turns the key to on_key

        def answered(stop: bool | None) -> None:
            if stop:
                self._send("stop")

        from ganterm.dashboard.screens import ConfirmScreen

        own_loop = watched.status.get("loop") == "own"
        then = "Its loop is asked to stop." if own_loop else "It checkpoints first."
        self.push_screen(ConfirmScreen(f"Stop training {watched.name}? {then}"), answered)

    def action_interrupt(self) -> None:
        """Ctrl-C asks before it stops anything; the default leaves training running."""
        watched = self.primary
        if watched.state not in ACTIVE_STATES:
            self.exit("left")
            return

        def answered(stop: bool | None) -> None:
            if stop and self._send("stop"):
                self.exit("stopped")
            else:
                self.exit("left")

        from ganterm.dashboard.screens import ConfirmScreen

        self.push_screen(ConfirmScreen(f"Quit the viewer. Stop training {watched.name} too?"), answered)

    def action_quit(self) -> None:
        self.exit("left")


def _whole(value: Any) -> int:
    """A status field that should be a positive whole number; anything else (another writer's mistake) is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
