"""The plot grid: a panel per dedicated metric group, then one per extra metric any watched run logs."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.reactive import var

from ganterm.dashboard.plots import MetricPlot, PlottedRun, View, extra_key, extra_panel
from ganterm.dashboard.series import panel_order
from ganterm.run.schema import PANELS

MIN_PLOT_HEIGHT = 8


class PlotGrid(VerticalScroll):
    """Bound to the app's runs, view and data version; each change redraws the panels it touched.

    The app decides when there is something new (its timer bumps `data_version`,
    at most once a second while history loads); the grid decides which panels
    that touches, and redraws those together in one `batch_update`.
    """

    runs: var[tuple[PlottedRun, ...]] = var(tuple, init=False)
    view: var[View] = var(View, init=False)
    data_version: var[int] = var(0, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._panel_keys = tuple(panel.key for panel in PANELS)

    def compose(self) -> ComposeResult:
        yield Grid(*(MetricPlot(panel) for panel in PANELS), id="plot-grid")

    def watch_runs(self) -> None:
        self.replot()

    def watch_view(self) -> None:
        self.replot()

    def watch_data_version(self) -> None:
        self.replot()

    def replot(self) -> None:
        """Lay the panels out, then redraw each one whose points, size or view changed since it was drawn."""
        if not self.is_mounted:
            return  # the data binding sets every field again once it is
        self._sync_panels()
        runs = list(self.runs)
        with self.app.batch_update():
            for plot in self.query(MetricPlot):
                plot.show_if_changed(runs, self.view)

    def _sync_panels(self) -> None:
        """One panel per extra metric any watched run logs; every row on screen when each can be
        MIN_PLOT_HEIGHT high, else two rows on screen and the rest below."""
        dedicated = [name for panel in PANELS for name in panel.metrics]
        logged = set().union(*(run.store.extra_names(dedicated) for run in self.runs))
        extras = sorted(logged, key=panel_order)
        keys = tuple(panel.key for panel in PANELS) + tuple(map(extra_key, extras))
        grid = self.query_one("#plot-grid", Grid)
        if keys != self._panel_keys:
            for plot in list(self.query(MetricPlot)):
                if plot.panel.key not in keys:
                    plot.remove()
            existing = {plot.panel.key: plot for plot in self.query(MetricPlot)}
            for index, name in enumerate(extras):
                if extra_key(name) in existing:
                    continue
                # a metric first logged mid-run (class_kl at step 250) goes in its place, not last
                later = next((existing[key] for key in map(extra_key, extras[index + 1 :]) if key in existing), None)
                grid.mount(MetricPlot(extra_panel(name)), before=later)
            self._panel_keys = keys
        # once rows arrive, a shared panel none of the runs logs anything of goes (a user's loop may log
        # no gradient norms); before, every shared panel waits, saying it has no data yet
        started = any(run.store.rows for run in self.runs)
        shown = 0
        for plot in self.query(MetricPlot):
            logged = any(run.store.get(name) is not None for run in self.runs for name in plot.panel.metrics)
            if plot.display != (logged or not started):
                plot.display = logged or not started
            shown += plot.display
        columns = 1 if self.screen.has_class("narrow") else 2
        rows = max(1, math.ceil(shown / columns))
        on_screen = rows if self.size.height // rows >= MIN_PLOT_HEIGHT else min(rows, 2)
        height = max(MIN_PLOT_HEIGHT, self.size.height // on_screen or MIN_PLOT_HEIGHT)
        grid.styles.grid_size_columns = columns
        grid.styles.grid_rows = str(height)
        grid.styles.height = height * rows
