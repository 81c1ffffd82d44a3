"""The header: where the primary run is, and how the plots are drawn.

The app owns the state (`Dashboard.headline`, `Dashboard.view`) and binds it
here; the header only redraws, in its watchers, when what it says changed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from ganterm.dashboard.plots import UNPLACED_WHY, View
from ganterm.dashboard.series import SeriesStore
from ganterm.progress import clock, eta_seconds
from ganterm.run.schema import STATE_STYLE
from ganterm.run.settings import differing, setting_text, settings_line
from ganterm.run.status import ACTIVE_STATES
from ganterm.sources.foreign import idle_since

X_AXIS_NAMES = {"step": "steps", "time": "wall-clock time", "images": "images seen"}


@dataclass(frozen=True)
class Headline:
    """What the header says of the primary run at one moment.

    Clocks are whole seconds, as shown: a headline equal to the last one
    means the header has nothing new to draw.
    """

    name: str = ""
    state: str = "unknown"
    step: int = 0
    total: int = 0
    epoch: float | None = None
    elapsed: int | None = None
    eta: int | None = None
    speed: float | None = None
    gpu: str | None = None
    device: str = ""
    world_size: int = 1
    compared: int = 1
    unplaced: dict[str, tuple[str, ...]] = field(default_factory=dict)  # x axis: the watched runs it cannot place
    waiting_for: str = ""  # what the worker waits for before it can measure something (status.json)
    settings: str = ""  # a user loop's config= (ganterm's own runs have dozens of settings: not here)
    differences: str = ""  # the settings that differ among the compared runs, each run's value in turn
    since: str = ""  # a read-only run's last write, as a clock time, while it is idle

    @classmethod
    def of(cls, name: str, state: str, status: dict[str, Any], store: SeriesStore, gpu: str | None,
           compared: int, unplaced: dict[str, tuple[str, ...]] | None = None) -> Headline:  # fmt: skip
        total = int(status.get("total") or 0)
        elapsed = eta = None
        times = store.get("t")
        if times is not None and times.size:
            end = time.time() if state in ACTIVE_STATES else float(times.values[-1])
            elapsed = int(end - float(times.values[0]))
            seconds = eta_seconds(times.steps, times.values, total) if state == "running" else None
            eta = None if seconds is None else int(seconds)
        return cls(
            name=name,
            state=state,
            step=int(status.get("step") or store.last_step()),
            total=total,
            epoch=store.last("epoch"),
            elapsed=elapsed,
            eta=eta,
            speed=store.last("img_per_s"),
            gpu=gpu,
            device=str(status.get("device") or ""),
            world_size=int(status.get("world_size") or 1),
            compared=compared,
            unplaced=unplaced or {},
            waiting_for=str(status.get("waiting_for") or ""),
            since=idle_since(state, status.get("since")),
        )

    def told_settings(self, status: dict[str, Any], runs_settings: list[dict[str, Any]]) -> Headline:
        """With the primary run's settings when a user's loop gave them, and what differs among the compared runs."""
        differences = [
            f"{key} " + " / ".join(setting_text(s[key]) if key in s else "-" for s in runs_settings)
            for key in (differing(runs_settings) if len(runs_settings) > 1 else [])
        ]
        own = settings_line(runs_settings[0]) if status.get("loop") == "own" and runs_settings else ""
        return dataclasses.replace(self, settings=own, differences=", ".join(differences))


def header_text(line: Headline, view: View) -> Text:
    """Two lines: where the run is, then how the plots are drawn."""
    step, total = line.step, line.total
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(line.name, style="bold")
    text.append("  ")
    text.append(f" {line.state.upper()} ", style=f"reverse {STATE_STYLE.get(line.state, '')}".strip())
    if line.since:
        text.append(f" since {line.since}")
    text.append(f"  step {step:,}" + (f"/{total:,} ({100 * step / total:.0f}%)" if total else ""))
    if line.epoch is not None:
        text.append(f" · epoch {line.epoch:.1f}")
    if line.elapsed is not None:
        text.append(f" · elapsed {clock(line.elapsed)}")
    if line.state == "running":
        text.append(f" · ETA {clock(line.eta)}")
    if line.speed is not None:  # global: every rank's images
        text.append(f" · {line.speed:,.0f} img/s")
    if line.world_size > 1:
        text.append(f" · {line.world_size} processes")
    if line.gpu:  # the reading matters more than the GPU's long name, which worker.log has
        text.append(f" · {line.gpu}")
    if line.device:
        text.append(f" · {line.device.split(' (')[0] if line.gpu else line.device}")
    text.append("\n")
    # the x axis and a first run's wait note first: the line is cut at the terminal's edge
    text.append(f"x: {X_AXIS_NAMES[view.x_axis]}", style="dim")
    if unplaced := line.unplaced.get(view.x_axis):
        text.append(f" ({', '.join(unplaced)}: {UNPLACED_WHY[view.x_axis]}, not drawn)", style="yellow")
    if line.waiting_for and line.state in ACTIVE_STATES:
        text.append(f" · quality waits for {line.waiting_for}", style="yellow")
    window = "whole run" if view.window is None else f"last {view.window:,} steps"
    smoothing = f"smoothing {view.smoothing:g}" if view.smoothing else "no smoothing"
    if view.smoothing and not view.spread:
        smoothing += " (raw spread hidden)"
    scale = "log scale" if view.log_scale else "linear"
    text.append(f" · {smoothing} · {scale} · {window}", style="dim")
    if line.compared > 1:
        text.append(f" · comparing {line.compared} runs", style="dim")
    text.append(" · ? for keys", style="dim")
    if line.differences:  # last, as the longest: what is cut at the edge is the end of a list
        text.append(f" · differ: {line.differences}", style="dim")
    if line.settings:
        text.append(f" · {line.settings}", style="dim")
    return text


class Header(Static):
    """ganterm's own two-line header (not Textual's `Header`): bound to the app's headline and view."""

    headline: var[Headline] = var(Headline, init=False)  # empty until the app has a headline, as before
    view: var[View] = var(View, init=False)

    def watch_headline(self) -> None:
        self.update(header_text(self.headline, self.view))

    def watch_view(self) -> None:
        self.update(header_text(self.headline, self.view))
