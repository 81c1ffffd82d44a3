"""Runs' histories as one tidy table: a row per metrics row, a column per metric, plus run, step, t and epoch.

A run fed by a user's loop also gives each of its `config=` settings a column
(`config.lr`), the same value on each of its rows, so runs can be grouped by them.
When any run exported logs D's raw outputs (a loss family other than
probability), a `loss` column names each run's family, so `d_x` and `d_g_z1`
are read right.

Two passes over each file: the first finds every name the (sparse) rows hold,
so the header or schema is whole before the first row is written; the second
writes. A value the run recorded as null (NaN or infinity: JSON has neither)
is NaN; a metric a row does not hold is an empty cell (CSV) or null (Parquet).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from ganterm.families import family_of
from ganterm.run.files import replacing
from ganterm.run.schema import column_order
from ganterm.run.settings import setting_text
from ganterm.sources import GantermRun, Pinned, Source
from ganterm.sources.ganterm_run import Rows

ROW_GROUP_ROWS = 1 << 16  # Parquet rows per row group: readers skip whole groups, memory stays a few MB
NAN = float("nan")
_ABSENT = object()


@dataclass(frozen=True)
class TableRun:
    """One run's rows to write and the text cells repeated on each of them: its loss family, a loop's settings."""

    history: Pinned
    cells: dict[str, str | None]


@dataclass(frozen=True)
class Layout:
    """What both formats write: the runs, in order, and the columns after `run` (text cells, then metrics)."""

    runs: list[TableRun]
    text: list[str]
    metrics: list[str]

    @property
    def columns(self) -> list[str]:
        return ["run", *self.text, *self.metrics]


def table_layout(histories: list[Pinned], advance: Callable[[int], None]) -> Layout:
    """The first pass: every metric name of every run, in `schema.column_order`, and each run's text cells."""
    names: dict[str, None] = {}
    for history in histories:
        names.update(history.names(advance))
    runs = table_runs(histories)
    text = list(dict.fromkeys(key for run in runs for key in run.cells))
    return Layout(runs, text, column_order(name for name in names if name != "run"))


def table_runs(histories: list[Pinned]) -> list[TableRun]:
    """Each run with its loss family where any run's is not probability, then a loop's settings."""
    families = [family_of(history.source.status()).name for history in histories]
    named = any(family != "probability" for family in families)
    return [
        TableRun(history, ({"loss": family} if named else {}) | loop_settings(history.source))
        for history, family in zip(histories, families, strict=True)
    ]


def loop_settings(source: Source) -> dict[str, str | None]:
    """A user loop's or another tool's settings as `config.<key>` cells (text, as written); {} for ganterm's runs."""
    if isinstance(source, GantermRun) and not source.run.loop_config.exists():
        return {}
    return {f"config.{key}": None if v is None else setting_text(v) for key, v in source.settings().items()}


def shadowed_notes(histories: list[Pinned]) -> list[str]:
    """Runs whose rows hold a metric named `run`, which the table's run column hides (ganterm refuses the name now)."""
    return [
        f"{history.source.name}: left out its metric 'run' (the table's run column holds the run's name)"
        for history in histories
        if "run" in history.found
    ]


def write_csv(histories: list[Pinned], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as CSV (pandas, trackio and spreadsheets read it); returns its columns."""
    layout = table_layout(histories, advance)
    with replacing(target) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(layout.columns)
        for run in layout.runs:
            lead = [run.history.source.name, *(run.cells.get(key) for key in layout.text)]  # None: an empty cell
            for chunk in run.history.chunks(advance):
                writer.writerows([*lead, *map(_cell, map(row.get, layout.metrics, repeat("")))] for row in chunk)
    return layout.columns


def _cell(value: Any) -> Any:
    """A CSV cell: null is written nan (pandas reads it back as NaN), true and false as 1 and 0."""
    if value is None:
        return "nan"
    return int(value) if value.__class__ is bool else value


def write_parquet(histories: list[Pinned], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as Parquet, in row groups of ROW_GROUP_ROWS: step int64, every other number float64."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = table_layout(histories, advance)
    types = {"run": pa.string(), "step": pa.int64(), **dict.fromkeys(layout.text, pa.string())}
    schema = pa.schema([(name, types.get(name, pa.float64())) for name in layout.columns])
    with replacing(target) as temp, pq.ParquetWriter(temp, schema) as writer:
        pending: list[pa.RecordBatch] = []
        held = 0
        for run in layout.runs:
            for chunk in run.history.chunks(advance):
                pending.append(_batch(chunk, run.history.source.name, schema, run.cells))
                held += len(chunk)
                if held >= ROW_GROUP_ROWS:  # a row group per write (pyarrow splits only past 2**20 rows)
                    writer.write_table(pa.Table.from_batches(pending))
                    pending, held = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending))
    return layout.columns


def _batch(chunk: Rows, run: str, schema: Any, settings: dict[str, str | None]) -> Any:
    import pyarrow as pa

    arrays = []
    for field in schema:
        if field.name == "run":
            arrays.append(pa.array([run] * len(chunk), pa.string()))
        elif field.name == "step":
            arrays.append(pa.array([int(row["step"]) for row in chunk], pa.int64()))
        elif field.type == pa.string():  # its loss or a loop's setting: this run's value on each of its rows
            arrays.append(pa.array([settings.get(field.name)] * len(chunk), pa.string()))
        else:
            values = [row.get(field.name, _ABSENT) for row in chunk]
            arrays.append(_float64([None if v is _ABSENT else NAN if v is None else v for v in values]))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _float64(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values, pa.float64())
    except pa.ArrowInvalid:  # an int past 2**53, which pyarrow will not round: rounded here, as any float64 would
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
