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


def table_columns(histories: list[Pinned], advance: Callable[[int], None]) -> list[str]:
    """`run`, then every metric name of every run in `schema.column_order`: the first pass."""
    names: dict[str, None] = {}
    for history in histories:
        names.update(history.names(advance))
    return ["run", *column_order(name for name in names if name != "run")]


def loop_settings(source: Source) -> dict[str, str | None]:
    """A user loop's or another tool's settings as `config.<key>` cells (text, as written); {} for ganterm's runs."""
    if isinstance(source, GantermRun) and not source.run.loop_config.exists():
        return {}
    return {f"config.{key}": None if v is None else setting_text(v) for key, v in source.settings().items()}


def setting_columns(settings: list[dict[str, str | None]]) -> list[str]:
    return list(dict.fromkeys(key for cells in settings for key in cells))


def shadowed_notes(histories: list[Pinned]) -> list[str]:
    """Runs whose rows hold a metric named `run`, which the table's run column hides (ganterm refuses the name now)."""
    return [
        f"{history.source.name}: left out its metric 'run' (the table's run column holds the run's name)"
        for history in histories
        if "run" in history.found
    ]


def run_cells(histories: list[Pinned]) -> list[dict[str, str | None]]:
    """Each run's text cells: its loss family where any run's is not probability, then a loop's settings."""
    families = [family_of(history.source.status()).name for history in histories]
    named = any(family != "probability" for family in families)
    return [{"loss": family} if named else {} for family in families]


def write_csv(histories: list[Pinned], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as CSV (pandas, trackio and spreadsheets read it); returns its columns."""
    columns = table_columns(histories, advance)
    names = columns[1:]
    settings = [cells | loop_settings(h.source) for h, cells in zip(histories, run_cells(histories), strict=True)]
    configured = setting_columns(settings)
    with replacing(target) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([columns[0], *configured, *names])
        for history, cells in zip(histories, settings, strict=True):
            run = [history.source.name, *(cells.get(key) for key in configured)]  # None: an empty cell
            for chunk in history.chunks(advance):
                writer.writerows([*run, *map(_cell, map(row.get, names, repeat("")))] for row in chunk)
    return [columns[0], *configured, *names]


def _cell(value: Any) -> Any:
    """A CSV cell: null is written nan (pandas reads it back as NaN), true and false as 1 and 0."""
    if value is None:
        return "nan"
    return int(value) if value.__class__ is bool else value


def write_parquet(histories: list[Pinned], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as Parquet, in row groups of ROW_GROUP_ROWS: step int64, every other number float64."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = table_columns(histories, advance)
    settings = [cells | loop_settings(h.source) for h, cells in zip(histories, run_cells(histories), strict=True)]
    configured = setting_columns(settings)
    columns = [columns[0], *configured, *columns[1:]]
    types = {"run": pa.string(), "step": pa.int64(), **dict.fromkeys(configured, pa.string())}
    schema = pa.schema([(name, types.get(name, pa.float64())) for name in columns])
    with replacing(target) as temp, pq.ParquetWriter(temp, schema) as writer:
        pending: list[pa.RecordBatch] = []
        held = 0
        for history, cells in zip(histories, settings, strict=True):
            for chunk in history.chunks(advance):
                pending.append(_batch(chunk, history.source.name, schema, cells))
                held += len(chunk)
                if held >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=held)
                    pending, held = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=held)
    return columns


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
