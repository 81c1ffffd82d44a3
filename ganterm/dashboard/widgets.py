"""The dashboard's side panels: samples and alerts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static
from textual_image.renderable import HalfcellImage, UnicodeImage
from textual_image.renderable import Image as PickedRenderer
from textual_image.widget import HalfcellImage as HalfBlockPicture
from textual_image.widget import Image as PickedPicture

from ganterm.dashboard.browser import in_browser
from ganterm.run.layout import GRID_KEY, GRID_PADDING
from ganterm.run.status import stalled_reason

ALERT_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# in a browser textual-image sees a pipe and picks grey shade characters; xterm.js draws coloured half-blocks
TerminalImage = HalfBlockPicture if in_browser() else PickedPicture
CELL_PICTURES = in_browser() or PickedRenderer in (HalfcellImage, UnicodeImage)  # no terminal graphics: text cells
MIN_SAMPLE_PIXELS = 8  # across one sample: below this an MNIST digit stops being legible


def ending_text(state: str, status: dict[str, Any], run_name: str) -> Text | None:
    """Why a run is not running (or not moving), in words, for the top of the alerts panel."""
    if status.get("read_only"):
        skipped = status.get("skipped") or {}
        passed = ", ".join(f"{count} {what}" for what, count in skipped.items())
        return Text(f"read-only: {status.get('writer', 'another tool')} writes it; ganterm only watches it"
                    + (f" (passed over records it does not draw: {passed})" if passed else ""))  # fmt: skip
    if state == "failed":
        return Text(f"failed: {status.get('error', 'see worker.log')}", style="bold red")
    # only a run ganterm's own worker trained can be continued by ganterm; a user's loop resumes itself
    go_on = f"; continue with ganterm train --resume {run_name}" if status.get("resumable", True) else ""
    if state == "lost":
        return Text(f"lost: the process writing it stopped beating{go_on}", style="bold red")
    if state == "stalled":
        return Text(f"stalled: {stalled_reason(status)}", style="bold yellow")
    if state == "stopped":
        return Text(f"stopped at step {status.get('step')}{go_on}")
    if state == "finished":
        return Text(f"finished all {status.get('total')} steps")
    if state == "external":
        return Text("metrics only: written by a training loop of your own")
    return None


class AlertsPanel(VerticalScroll):
    """Alerts the worker recorded, oldest first like a log, each one plain sentence; why the run ended comes last.

    Every alert stays reachable by scrolling. The panel follows the newest while it is
    scrolled to the bottom, and stays put while the user reads older ones.
    """

    def compose(self) -> ComposeResult:
        yield Static(id="alerts-text")

    def show(self, alerts: list[dict[str, Any]], ending: Text | None) -> None:
        text = Text()
        for alert in alerts:
            severity = str(alert.get("severity", "warning"))
            text.append(f"{severity} @ {alert.get('step', '?')}: ", style=ALERT_STYLE.get(severity, ""))
            text.append(f"{alert.get('message', alert.get('check', ''))}\n")
        if ending is not None:
            text.append_text(ending)
        if not text.plain:
            text.append("no alerts", style="dim")
        following = self.scroll_y >= self.max_scroll_y
        self.query_one("#alerts-text", Static).update(text.rstrip() or text)
        if following:
            self.scroll_end(animate=False)  # after the next layout, which knows the new height


def legible_part(image: PILImage.Image, layout: str | None, pixels: tuple[int, int]) -> tuple[PILImage.Image, int, int]:
    """The top-left samples of a grid that `pixels` (width, height) can show at MIN_SAMPLE_PIXELS each.

    Half-block cells give a side panel about 34×42 pixels: a whole 8×8 grid
    there is mush, 4×5 samples of it are digits. Returns the picture, how many
    samples it shows and how many the grid has (0 and 0: not a grid ganterm wrote).
    """
    try:
        count, columns, rows, cell_width, cell_height = (int(part) for part in (layout or "").split())
    except ValueError:
        return image, 0, 0
    shown_columns = max(1, min(columns, pixels[0] // MIN_SAMPLE_PIXELS))
    shown_rows = max(1, min(rows, pixels[1] // MIN_SAMPLE_PIXELS))
    if (shown_columns, shown_rows) == (columns, rows):
        return image, count, count
    crop = (0, 0, shown_columns * cell_width + GRID_PADDING, shown_rows * cell_height + GRID_PADDING)
    shown = sum(min(shown_columns, max(0, count - row * columns)) for row in range(shown_rows))  # last row: part
    return image.crop(crop), shown, count


class SamplesPanel(Vertical):
    """The newest fixed-noise grid, or an earlier one while the user steps back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files: list[Path] = []
        self.index: int | None = None  # None follows the newest grid

    def compose(self) -> ComposeResult:
        yield Label("no grid yet", id="samples-title")  # the border says samples
        yield TerminalImage(id="samples-image")

    def set_files(self, files: list[Path]) -> None:
        self.files = files
        self._draw()

    def step_through(self, offset: int) -> None:
        if not self.files:
            return
        current = len(self.files) - 1 if self.index is None else self.index
        target = max(0, min(len(self.files) - 1, current + offset))
        self.index = None if target == len(self.files) - 1 else target
        self._draw()

    def on_resize(self) -> None:
        self._draw()  # a bigger panel shows more of the grid

    def _draw(self) -> None:
        if not self.files:
            self.query_one("#samples-title", Label).update("no grid yet")
            self.query_one(TerminalImage).image = None
            return
        index = len(self.files) - 1 if self.index is None else self.index
        path = self.files[index]
        where = "newest" if self.index is None else f"{index + 1}/{len(self.files)} ] newer"
        step = _step_of(path)
        try:
            with PILImage.open(path) as image:
                image.load()
                layout = getattr(image, "text", {}).get(GRID_KEY)
                picture = image.convert("RGB")
        except OSError:  # the grid is being replaced; the next poll shows it
            return
        except PILImage.DecompressionBombError:  # another tool's image may declare any size: not decoded
            self.query_one("#samples-title", Label).update(f"step {step} · too large to show")
            self.query_one(TerminalImage).image = None
            return
        shown = ""
        widget = self.query_one(TerminalImage)
        if CELL_PICTURES and self.size.width > 0 and self.size.height > 1:  # graphics have pixels for it all
            pixels = (self.size.width, 2 * (self.size.height - 1))  # two square half-block pixels a cell
            picture, count, total = legible_part(picture, layout, pixels)
            shown = f" · {count} of {total}" if count < total else ""
            scale = min(pixels[0] / picture.width, pixels[1] / picture.height)  # fit, keeping the aspect
            widget.styles.width = max(1, round(picture.width * scale))
            widget.styles.height = max(1, round(picture.height * scale / 2))
        self.query_one("#samples-title", Label).update(f"{step} · {where}{shown}")
        widget.image = picture


def _step_of(path: Path) -> str:
    """`step 200` from ganterm's step_0000200.png, StyleGAN's fakes000200.png (its kimg); else the file's name."""
    digits = re.search(r"(\d+)$", path.stem)
    return f"step {int(digits.group(1))}" if digits else path.stem
