"""`ganterm runs`: one row per run directory, read without waking any worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ganterm.families import FAMILIES, family_of
from ganterm.run.layout import RunDir
from ganterm.run.schema import STATE_STYLE
from ganterm.run.settings import settings_line
from ganterm.run.text import visible
from ganterm.sources import GantermRun, Source, find_runs


def age(seconds: float) -> str:
    """3s, 4m, 2h, 5d: how long ago, in the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def _number(row: dict[str, Any], name: str, digits: int) -> str:
    value = row.get(name)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


CSV_STATISTICS = ("loss_d", "loss_g", "d_x", "d_g_z1", "img_per_s")  # also the table's


def run_record(run: RunDir | Source, now: float) -> dict[str, Any]:
    """What `ganterm runs --json` says of a run: plain values, the latest statistics by name."""
    source = GantermRun(run) if isinstance(run, RunDir) else run
    status = source.status()
    # each statistic's newest value: a quality row may come last, and some are logged every few steps only
    row = source.latest(CSV_STATISTICS)
    started = status.get("started") or (source.path.stat().st_mtime if source.path.exists() else now)
    statistics = {k: v for k, v in row.items() if k not in ("step", "t") and isinstance(v, (int, float))}
    return {
        "name": run.name,
        "state": status["state"],
        "step": status.get("step", row.get("step", 0)),
        "total": status.get("total"),
        "statistics": statistics,
        "device": status.get("device"),
        "world_size": status.get("world_size", 1),
        "loss": family_of(status).name,  # how to read d_x and d_g_z1: sigmoid means, or D's raw outputs
        "started": started,
        "heartbeat": status.get("heartbeat"),
        "path": str(source.path.resolve()),
        "config": source.settings(),
        "kind": source.kind,  # ganterm, or the tool that writes it (tensorboard, stylegan): read-only
    }


CSV_COLUMNS = ("name", "state", "step", "total", *CSV_STATISTICS, "loss", "device", "world_size", "started",
               "heartbeat", "path", "kind")  # fmt: skip


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A `run_record` flattened for `ganterm runs --csv`: one column per field and headline statistic, each text
    `visible`, since the CSV goes to a terminal as often as to a file."""
    flat = {**record, **{name: record["statistics"].get(name) for name in CSV_STATISTICS}}
    return {column: visible(flat[column]) if isinstance(flat[column], str) else flat[column] for column in CSV_COLUMNS}


def run_summary(run: RunDir | Source, now: float) -> dict[str, str]:
    """The cells of a run's row in the `ganterm runs` table, each `visible`: a folder's name or a status may hold
    anything, and the cells' widths are measured as they will be shown."""
    record = run_record(run, now)
    row, step, total = record["statistics"], record["step"], record["total"]
    digits = 2 if record["loss"] == "probability" else 3  # a probability's two digits; raw scores get three
    cells = {
        "name": run.name,
        "state": record["state"],
        "step": f"{step}/{total}" if total else str(step),
        "loss_d": _number(row, "loss_d", 3),
        "loss_g": _number(row, "loss_g", 3),
        "loss": record["loss"],
        "d_x": _number(row, "d_x", digits),
        "d_g_z": _number(row, "d_g_z1", digits),
        "img_per_s": _number(row, "img_per_s", 0),
        "age": age(now - float(record["started"])),
        "device": str(record["device"] or "-").split(" (")[0],  # cuda:0, not the full GPU name
        # a user loop's own settings; ganterm's runs have dozens, which `ganterm runs --json` gives
        "config": settings_line(record["config"]) if _own_loop(run) else "-",
    }
    shown = {key: visible(cell) for key, cell in cells.items()}
    shown["config"] = _cut(shown["config"], CONFIG_CELLS)  # cut as it is shown
    return shown


CONFIG_CELLS = 60
NAME_CELLS = 30  # a run name past this is cut, rather than leave out a column for it; ganterm's own are shorter


def _own_loop(run: RunDir | Source) -> bool:
    """A user loop's run (it saved its `config=`): its settings are few enough for a cell."""
    folder = run if isinstance(run, RunDir) else run.run if isinstance(run, GantermRun) else None
    return folder is not None and folder.loop_config.exists()


def _table_cells(widths: dict[str, int], keys: list[str]) -> int:
    """The width of a table of these columns: each column's cells, its padding and a border, and the last border."""
    return sum(widths[key] + 3 for key in keys) + 1


def _cut(text: str, cells: int) -> str:
    return text if cell_len(text) <= cells else text[: cells - 1] + "…"


COLUMNS = (  # (key in run_summary, header, justify)
    ("name", "name", "left"),
    ("state", "state", "left"),
    ("step", "step", "right"),
    ("loss", "loss", "left"),  # only when the runs listed are of more than one loss family
    ("loss_d", "loss_d", "right"),
    ("loss_g", "loss_g", "right"),
    ("d_x", "D(x)", "right"),
    ("d_g_z", "D(G(z))", "right"),
    ("img_per_s", "img/s", "right"),
    ("age", "age", "right"),
    ("device", "device", "left"),
    ("config", "config", "left"),  # only when a run listed has a loop's config
)
DROPPED_FIRST = (
    "config",
    "loss",
    "device",
    "age",
    "img_per_s",
    "d_g_z",
    "d_x",
    "loss_g",
    "loss_d",
)  # when too narrow for all


def runs_table(root: Path, width: int = 200, roles: Path | None = None) -> Table | Text:
    """The `ganterm runs` table; a one-line hint instead of an empty table.

    Columns that do not fit in `width` are left out whole, least useful first:
    squeezed to fit, every number would shrink to one digit and an ellipsis.
    """
    now = time.time()
    summaries = [run_summary(run, now) for run in find_runs(root, roles)]
    if not summaries:
        return Text(f"no runs in {root}/ yet; start one with: ganterm train")
    columns = [column for column in COLUMNS if column[0] != "config" or any(s["config"] != "-" for s in summaries)]
    families = {summary["loss"] for summary in summaries}
    if len(families) == 1:  # one family: its own words head D's columns, and a loss column would say nothing
        headers = dict(zip(("d_x", "d_g_z"), FAMILIES[families.pop()].headers, strict=True))
        columns = [(key, headers.get(key, header), justify) for key, header, justify in columns if key != "loss"]
    widths = {key: max(cell_len(header), *(cell_len(s[key]) for s in summaries)) for key, header, _ in columns}
    widths["name"] = min(widths["name"], NAME_CELLS)  # a longer name is cut before any column is left out
    shown = [key for key, _, _ in columns]
    for key in DROPPED_FIRST:
        if _table_cells(widths, shown) <= width:
            break
        if key in shown:
            shown.remove(key)
    # the name takes what the other columns leave (it may still be cut): state, step and numbers stay whole
    room = max(width - _table_cells(widths, [key for key in shown if key != "name"]) - 3, 1)
    for summary in summaries:
        summary["name"] = _cut(summary["name"], room)
    hidden = [header for key, header, _ in columns if key not in shown]
    caption = f"{', '.join(hidden)} left out: too narrow a terminal" if hidden else None
    if caption and cell_len(caption) > width:
        caption = f"{len(hidden)} columns left out: too narrow a terminal"
    table = Table(title=Text(f"runs in {root}/"), title_justify="left", caption=caption, caption_justify="left")
    for key, header, justify in columns:
        if key in shown:
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for summary in summaries:  # cells as Text: a run's name is never read as markup
        style = STATE_STYLE.get(summary["state"], "")
        table.add_row(*(Text(summary[key], style=style if key == "state" else "") for key in shown))
    return table
