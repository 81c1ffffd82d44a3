"""Modal screens: key help, stop confirmation, the run picker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from ganterm.listing import run_summary
from ganterm.run.layout import RunDir, list_runs


class HelpScreen(ModalScreen[None]):
    """Every key of the main screen, generated from its bindings so it cannot go stale."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = bindings

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("ganterm keys\n\n", style="bold")
        for key, description in self.rows:
            text.append(f"{key:>9}  ", style="bold")
            text.append(f"{description}\n")
        text.append("\nQuitting the viewer never stops training.", style="dim")
        with VerticalScroll(id="help-box", classes="modal-box"):  # scrolls in a short terminal
            yield Static(text)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; no is the default, so a stray key never stops a run."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(self.question, markup=False)  # it quotes a run's name
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class RunPicker(ModalScreen[list[RunDir]]):
    """Filterable list of runs: enter opens the highlighted one, or overlays every ticked one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss([])", "cancel"),
        Binding("enter", "choose", "open", priority=True),
    ]

    def __init__(self, root: Path, showing: list[RunDir]) -> None:
        super().__init__()
        self.runs = list_runs(root)
        now = time.time()
        self.summaries = {str(run.path): run_summary(run, now) for run in self.runs}
        self.ticked = {str(run.path) for run in showing} if len(showing) > 1 else set()

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box", classes="modal-box"):
            yield Label("runs · type to filter · space ticks runs to compare · enter opens")
            yield Input(placeholder="filter by name or state", id="picker-filter")
            yield SelectionList[str](id="picker-list")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one(Input).focus()

    def _fill(self, pattern: str) -> None:
        listing = self.query_one(SelectionList)
        listing.clear_options()
        for run in self.runs:
            summary = self.summaries[str(run.path)]
            line = f"{summary['name']:<32} {summary['state']:<9} {summary['step']:>13}  loss_d {summary['loss_d']}"
            if pattern.lower() in line.lower():
                listing.add_option(Selection(Text(line), str(run.path), str(run.path) in self.ticked))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        listing = self.query_one(SelectionList)
        visible = {listing.get_option_at_index(i).value for i in range(listing.option_count)}
        self.ticked = (self.ticked - visible) | set(listing.selected)

    def on_key(self, event) -> None:
        """Arrows and space reach the list while typing goes to the filter."""
        listing = self.query_one(SelectionList)
        if event.key in ("up", "down") and not listing.has_focus:
            listing.focus()
            listing.action_cursor_down() if event.key == "down" else listing.action_cursor_up()
            event.stop()

    def action_choose(self) -> None:
        by_path = {str(run.path): run for run in self.runs}
        if self.ticked:
            self.dismiss([by_path[path] for path in sorted(self.ticked) if path in by_path])
            return
        listing = self.query_one(SelectionList)
        if listing.highlighted is None and listing.option_count:
            listing.highlighted = 0
        if listing.highlighted is not None:
            self.dismiss([by_path[listing.get_option_at_index(listing.highlighted).value]])
