"""`ganterm eval`'s table: what each generator of a checkpoint measured, side by side."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

GENERATOR_HEADERS = {"ema": "EMA generator", "raw": "raw generator", "exported": "exported generator"}


def metrics_table(measured: dict[str, dict[str, float]], title: str) -> Table:
    """`ganterm eval`: one metric per row, one column per generator, counts shown as whole numbers."""
    table = Table(title=Text(title), title_justify="left")  # the title holds a path: never markup
    table.add_column("metric")
    for generator in measured:
        table.add_column(GENERATOR_HEADERS.get(generator, generator), justify="right")
    names = list(dict.fromkeys(name for metrics in measured.values() for name in metrics))
    for name in names:
        table.add_row(name, *(_metric_cell(metrics.get(name)) for metrics in measured.values()))
    return table


def _metric_cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4f}"
