"""`ganterm runs`: one row per run directory, read without waking any worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.table import Table

from ganterm.rundir import RunDir, effective_state, last_record, list_runs, read_status

STATE_STYLE = {
    "running": "green",
    "paused": "yellow",
    "starting": "cyan",
    "finished": "blue",
    "stopped": "magenta",
    "failed": "bold red",
    "lost": "bold red",
}


def age(seconds: float) -> str:
    """3s, 4m, 2h, 5d: how long ago, in the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def _number(row: dict[str, Any], name: str, digits: int) -> str:
    value = row.get(name)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def run_summary(run: RunDir, now: float) -> dict[str, str]:
    status = read_status(run) or {}
    # a quality row may come last; the training statistics are in the last row that has them
    row = last_record(run.metrics, having="loss_d") or last_record(run.metrics) or {}
    started = status.get("started") or (run.path.stat().st_mtime if run.path.exists() else now)
    step = status.get("step", row.get("step", 0))
    total = status.get("total")
    return {
        "name": run.name,
        "state": effective_state(status) if status else ("external" if row else "unknown"),
        "step": f"{step}/{total}" if total else str(step),
        "loss_d": _number(row, "loss_d", 3),
        "loss_g": _number(row, "loss_g", 3),
        "d_x": _number(row, "d_x", 2),
        "d_g_z": _number(row, "d_g_z1", 2),
        "img_per_s": _number(row, "img_per_s", 0),
        "age": age(now - float(started)),
        "device": str(status.get("device", "-")).split(" (")[0],  # cuda:0, not the full GPU name
    }


def runs_table(root: Path) -> Table | str:
    """The `ganterm runs` table; a one-line hint instead of an empty table."""
    table = Table(title=f"runs in {root}/", title_justify="left")
    headers = [
        ("name", "left"),
        ("state", "left"),
        ("step", "right"),
        ("loss_d", "right"),
        ("loss_g", "right"),
        ("D(x)", "right"),
        ("D(G(z))", "right"),
        ("img/s", "right"),
        ("age", "right"),
        ("device", "left"),
    ]
    for header, justify in headers:
        table.add_column(header, justify=justify, no_wrap=header in ("name", "state"))  # type: ignore[arg-type]
    now = time.time()
    for run in list_runs(root):
        summary = run_summary(run, now)
        style = STATE_STYLE.get(summary["state"], "")
        cells = list(summary.values())
        cells[1] = f"[{style}]{cells[1]}[/]" if style else cells[1]
        table.add_row(*cells)
    if not table.rows:
        return f"no runs in {root}/ yet; start one with: ganterm train"
    return table


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    """`ganterm eval`: one metric per row, counts shown as whole numbers."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4f}")
    return table
