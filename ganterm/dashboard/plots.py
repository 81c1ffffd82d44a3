"""Metric panels: plotext plots of one or more runs, downsampled to the cells they have."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
from plotext._utility import colors_to_ansi
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from ganterm.dashboard.series import Series, SeriesStore, bucket_means, envelope, smooth
from ganterm.families import DEFAULT_FAMILY, FAMILIES, SERIES, Family
from ganterm.run import schema
from ganterm.run.schema import PANELS, Panel

# plotext's names, each a different one of a 16-colour terminal's; gray is left for the raw spread.
RUN_COLOURS = ("cyan", "orange", "green", "magenta", "blue+", "red", "orange+", "green+")
SERIES_MARKERS = ("braille", "dot", "hd")
# Under NO_COLOR every series is one shade of grey, so each one drawn in a panel gets a marker of its own.
NO_COLOUR_MARKERS = ("braille", "x", "o", "+", "*", "#", "=", "%")


# what the x axis counts: runs of different batch sizes or speeds line up only by images seen or by time
X_AXES = ("step", "time", "images")
# why a run has no place on an axis (every run has steps)
UNPLACED_WHY = {"time": "no wall times logged", "images": "images per step unknown"}


@dataclass(frozen=True)
class View:
    """How every plot is drawn right now; the keys replace it with a changed copy."""

    smoothing: float = 0.6
    log_scale: bool = False
    window: int | None = None  # last N steps, or the whole run
    x_axis: str = "step"  # one of X_AXES
    spread: bool = True  # the raw values' min/max envelope behind a smoothed line


@dataclass(frozen=True)
class PlottedRun:
    name: str
    store: SeriesStore
    colour: str
    images_per_step: int = 0  # 0: unknown (a user's loop that did not say), so no images-seen axis
    family: Family = FAMILIES[DEFAULT_FAMILY]  # how to read its D outputs (status.json's `loss`)

    def x_of(self, steps: np.ndarray, axis: str) -> np.ndarray | None:
        """Where these steps go on the x axis; None when this run cannot be placed on it.

        Called with the few points left after bucketing, so a time axis costs no more than a step axis.
        """
        if axis == "images":
            return steps * float(self.images_per_step) if self.images_per_step else None
        if axis == "time":
            clock = self.store.clock()
            if clock is None:
                return None
            clock_steps, times = clock
            return np.interp(steps, clock_steps, times) - float(times[0])
        return steps.astype(np.float64)

    def placeable(self, axis: str) -> bool:
        return self.x_of(np.zeros(1), axis) is not None

    def first_step_at(self, x: float, axis: str) -> float:
        """The step at `x` on the axis (the inverse of `x_of`); only called for runs `x_of` can place."""
        if axis == "images":
            return x / float(self.images_per_step)
        if axis == "time":
            clock = self.store.clock()
            assert clock is not None
            clock_steps, times = clock
            return float(np.interp(x, times - times[0], clock_steps))
        return x


def zoom_start(runs: list[PlottedRun], view: View) -> float | None:
    """Where a zoomed view begins on the x axis: `view.window` steps before the end of the run that goes furthest.

    In the axis' own units, so overlaid runs of other batch sizes or speeds show the same stretch of
    images or time, not each its own last N steps. None: the whole run.
    """
    if view.window is None:
        return None
    ends = []
    for run in runs:
        last = run.store.last_step()
        if last and (placed := run.x_of(np.array([max(0, last - view.window), last]), view.x_axis)) is not None:
            ends.append((float(placed[1]), float(placed[0])))
    return max(ends)[1] if ends else None


def _size(series: Series | None) -> int:
    return -1 if series is None else series.size


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


class MetricPlot(PlotextPlot):
    """One panel; `show` draws it from the runs' stores with the current view."""

    def __init__(self, panel: Panel, **kwargs) -> None:
        super().__init__(id=widget_id(panel.key), classes="metric-plot", **kwargs)
        self.panel = panel
        self.shown_from: tuple | None = None  # what the plot was last drawn from

    def drawn_from(self, runs: list[PlottedRun], view: View) -> tuple:
        """Everything `show` draws from; an equal tuple draws the same picture.

        Series only grow (history in front, live points behind) and a rewound
        run gets a new store, so a store and its series' sizes stand for its points;
        a zoomed view also depends on where the window starts, which any run's new steps move.
        """
        points = tuple(
            (run, tuple(_size(run.store.get(name)) for name in self.panel.metrics)) for run in runs
        )  # a PlottedRun compares by its name, colour, store and images per step
        return view, self.size, self.app.no_color, points, zoom_start(runs, view)

    def show_if_changed(self, runs: list[PlottedRun], view: View) -> bool:
        """Redraw unless nothing this plot draws from changed since its last drawing; True if it redrew."""
        drawn_from = self.drawn_from(runs, view)
        if drawn_from == self.shown_from:
            return False
        self.show(runs, view)
        self.shown_from = drawn_from
        return True

    def show(self, runs: list[PlottedRun], view: View) -> None:
        panel = read_by_family(self.panel, runs)
        plt = self.plt
        plt.clear_data()
        buckets = max(8, self.size.width - 12)
        log_scale = view.log_scale and self.panel.log_scale_allowed
        plt.yscale("log" if log_scale else "linear")
        drawn = 0
        unplaced = False  # some run has points but no place on this x axis (UNPLACED_WHY says why)
        unit = XUnit.of(runs, view.x_axis)
        first, last = math.inf, -math.inf
        low, high = math.inf, -math.inf
        start = zoom_start(runs, view)
        for run in runs:
            placeable = run.placeable(view.x_axis)
            from_step = run.first_step_at(start, view.x_axis) if start is not None and placeable else None
            for index, name in enumerate(self.panel.metrics):
                series = run.store.get(name)
                if series is None or series.size == 0:
                    continue
                steps, values = series.since(from_step)
                if len(steps) == 0 and run.store.last_step() >= from_step:  # sparse (quality): its newest point
                    steps, values = series.steps[-1:], series.values[-1:]
                if log_scale and not values.min(initial=math.inf) > 0:  # copying a million points costs ~3 ms
                    keep = values > 0
                    steps, values = steps[keep], values[keep]
                if len(steps) == 0:
                    continue
                if run.x_of(steps[-1:], view.x_axis) is None:
                    unplaced = True
                    continue
                label = schema.label(name)
                if len(runs) > 1:
                    label = f"{run.name} {label}"
                label = f"{label} {_fmt(series.last())}"
                colour = run.colour if len(runs) > 1 else RUN_COLOURS[index % len(RUN_COLOURS)]
                if self.app.no_color:
                    marker = NO_COLOUR_MARKERS[drawn % len(NO_COLOUR_MARKERS)]
                else:
                    marker = SERIES_MARKERS[index % len(SERIES_MARKERS)] if len(runs) > 1 else "braille"
                x, lows, highs = envelope(steps, values, buckets)
                x = unit.place(run, x)
                if view.smoothing > 0:
                    for edge in (lows, highs) if view.spread else ():  # points: lines would double the cost
                        _points(plt, x, edge, color="gray", marker="·" if self.app.no_color else "dot")
                    _, means, sizes = bucket_means(steps, values, buckets)  # the envelope's buckets and x
                    line = smooth(means, view.smoothing, sizes)
                    _line(plt, x, line, color=colour, marker=marker, label=label)
                    shown = np.concatenate([lows, highs]) if view.spread else line  # the y range fits what is drawn
                else:
                    _line(plt, x, highs, color=colour, marker=marker, label=label)
                    if len(x) < len(steps):
                        _line(plt, x, lows, color=colour, marker=marker)
                    shown = np.concatenate([lows, highs])
                first, last = min(first, float(x[0])), max(last, float(x[-1]))
                shown = shown[np.isfinite(shown)]
                if shown.size:
                    low, high = min(low, float(shown.min())), max(high, float(shown.max()))
                drawn += 1
        for reference in panel.references if drawn else ():
            plt.hline(reference, color="gray")
        if not log_scale and low <= high and high - low <= 1e-6 * max(1.0, abs(high)):
            plt.ylim(*flat_range(low, high))
        else:
            plt.ylim(None, None)
        plt.xlabel(unit.label)
        if drawn:
            ticks = nice_ticks(first, last, smallest=1.0 if unit.whole else 0.0)
            plt.xticks(ticks, [unit.tick(tick) for tick in ticks])
        missing = UNPLACED_WHY[view.x_axis] if unplaced else "no data yet"  # the header says more
        plt.title(panel.title if drawn else f"{panel.title} · {missing}")
        self.refresh()

    def render(self) -> RenderResult:
        """PlotextPlot.render, minus the ANSI round trip; a degenerate view (two points on a log axis) says so.

        Private plotext and textual-plotext names (`_set_size`, `_set_sizes`, `_build_matrix`,
        `monitor.matrix`, `_get_plotext_theme_name`, `_utility.colors_to_ansi`) make it ~11 ms a
        redraw against ~20 ms through the public `build()` (bench/dashboard.py, 200,000 steps):
        pyproject.toml caps both packages, and tests/test_dashboard.py fails by name when one goes.
        """
        figure = self.plt
        figure.plotsize(self.size.width, self.size.height)
        figure._set_size(self.size.width, self.size.height)  # as PlotextPlot does (textual-plotext issue 5)
        figure.theme(self._get_plotext_theme_name(self.app.theme))
        try:
            figure._set_sizes()
            figure._build_matrix()  # plotext's build() without encoding the cells as ANSI text
        except (IndexError, ValueError, ZeroDivisionError, OverflowError):
            return Text(f"{self.panel.title}: too few points to draw in this view", style="dim")
        return matrix_text(figure.monitor.matrix)


def matrix_text(matrix) -> Text:
    """plotext's cell matrix as Rich text, one span per run of equally styled cells.

    textual-plotext renders `Text.from_ansi(figure.build())`: plotext writes an
    escape sequence per colour change and Rich parses them all back, which was
    about half the time of a redraw.
    """
    text = Text(no_wrap=True, end="")
    for row in reversed(range(matrix.rows)):
        markers, colours, styles, backgrounds = (
            matrix.marker[row], matrix.fullground[row], matrix.style[row], matrix.background[row]
        )  # fmt: skip
        start = 0
        for col in range(1, matrix.cols + 1):
            if col < matrix.cols and (colours[col], styles[col], backgrounds[col]) == (
                colours[start], styles[start], backgrounds[start]
            ):  # fmt: skip
                continue
            text.append("".join(markers[start:col]), _cell_style(_key(colours[start]), styles[start],
                                                                   _key(backgrounds[start])))  # fmt: skip
            start = col
        if row:
            text.append("\n")
    return text


def _key(colour):
    """plotext colours are names, 256-colour codes or RGB lists; lists cannot be cache keys."""
    return tuple(colour) if isinstance(colour, list) else colour


@functools.cache
def _cell_style(colour, style: str, background) -> Style:
    """The Rich style of plotext's escape sequence for these colours: the same look, parsed once."""
    spans = Text.from_ansi(colors_to_ansi(colour, style, background) + "x").spans
    styles = [Style.parse(span.style) if isinstance(span.style, str) else span.style for span in spans]
    return Style.combine([Style.null(), *styles])


def _line(plt, x: np.ndarray, y: np.ndarray, **style: str) -> None:
    """plotext draws finite points only; gaps (NaN) are left out."""
    finite = np.isfinite(y)
    if finite.any():
        plt.plot(x[finite].tolist(), y[finite].tolist(), **style)


def _points(plt, x: np.ndarray, y: np.ndarray, **style: str) -> None:
    finite = np.isfinite(y)
    if finite.any():
        plt.scatter(x[finite].tolist(), y[finite].tolist(), **style)


def nice_ticks(first: float, last: float, count: int = 4, smallest: float = 0.0) -> list[float]:
    """Round numbers for the x axis: 1, 2 or 5 times a power of ten apart, and at least `smallest`."""
    if last - first < 1e-9:  # one point, or one x value: one tick
        return [round(first, 9)]
    raw = max((last - first) / count, smallest)
    magnitude = 10 ** math.floor(math.log10(raw))
    spacing = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.ceil(first / spacing) * spacing
    # rounded to the spacing's own digits, so 0.1 + 0.2 is labelled 0.3
    digits = max(0, -math.floor(math.log10(spacing)))
    return [round(start + i * spacing, digits) for i in range(count + 1) if start + i * spacing <= last + 1e-9]


def _compact(value: float) -> str:
    """1,500,000 → 1.5M: images seen run to millions, and a tick label has a few cells."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


@dataclass(frozen=True)
class XUnit:
    """The x axis's label, the divisor that turns steps, seconds or images into its unit, and its tick text."""

    axis: str
    label: str
    scale: float = 1.0
    whole: bool = False  # steps and images come in whole numbers: no tick between two of them

    @classmethod
    def of(cls, runs: list[PlottedRun], axis: str) -> XUnit:
        if axis == "images":
            return cls(axis, "images seen", whole=True)
        if axis == "step":
            return cls(axis, "step", whole=True)
        clocks = [clock for run in runs if (clock := run.store.clock()) is not None]
        span = max((float(times[-1] - times[0]) for _, times in clocks), default=0.0)
        if span >= 3 * 3600:
            return cls(axis, "time (hours)", 3600.0)
        return cls(axis, "time (min)", 60.0) if span >= 180 else cls(axis, "time (s)")

    def place(self, run: PlottedRun, steps: np.ndarray) -> np.ndarray:
        placed = run.x_of(steps, self.axis)
        assert placed is not None  # runs that cannot be placed are skipped before bucketing
        return placed / self.scale

    def tick(self, value: float) -> str:
        if self.axis == "step":
            return f"{value:,.0f}"
        return _compact(value) if self.axis == "images" else f"{value:g}"


def flat_range(low: float, high: float) -> tuple[float, float]:
    """A y range around a constant series; plotext's own would print its rounding noise (10.0000000000000018)."""
    middle = (low + high) / 2
    pad = max(abs(middle) * 0.1, 0.5)
    return middle - pad, middle + pad


SHARED_KEYS = frozenset(panel.key for panel in PANELS)


def extra_panel(name: str) -> Panel:
    """A panel for a metric with no dedicated one (quality metrics, a family's series, a user's own numbers)."""
    info = SERIES.get(name)
    return (
        Panel(extra_key(name), info.title, (name,), info.references)
        if info
        else Panel(extra_key(name), schema.label(name), (name,))
    )


def extra_key(name: str) -> str:
    """The metric's name, unless a shared panel has it as its key (a loop may log `losses`)."""
    return f"metric:{name}" if name in SHARED_KEYS else name


def widget_id(key: str) -> str:
    """`plot-<key>`, as Textual takes ids: each character but letters, digits and `_` written as `-<hex>-`.

    A user's metric may be named `train/loss`, `acc@1` or `D(x)`; written this way no two names share an id.
    """
    return "plot-" + re.sub(r"[^A-Za-z0-9_]", lambda match: f"-{ord(match.group()):x}-", key)


def read_by_family(panel: Panel, runs: list[PlottedRun]) -> Panel:
    """The D panel as the runs' loss family reads it: its title, y-axis words and reference lines.

    Runs of different families share the panel only as numbers: the title says so and draws no line.
    """
    if panel.key != "d_outputs" or not runs:
        return panel
    families = {run.family.name: run.family for run in runs}
    if len(families) > 1:
        return Panel(panel.key, f"D's outputs · read each by its loss: {', '.join(families)}", panel.metrics)
    (family,) = families.values()
    return Panel(panel.key, family.d_title, panel.metrics, family.references)
