"""Runs' histories as one tidy table: a row per metrics row, a column per metric, plus run, step, t and epoch.

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

from ganterm.export.history import History, Rows
from ganterm.run.files import replacing
from ganterm.run.schema import column_order

ROW_GROUP_ROWS = 1 << 16  # Parquet rows per row group: readers skip whole groups, memory stays a few MB
NAN = float("nan")
_ABSENT = object()


def table_columns(histories: list[History], advance: Callable[[int], None]) -> list[str]:
    """`run`, then every metric name of every run in `schema.column_order`: the first pass."""
    names: dict[str, None] = {}
    for history in histories:
        names.update(history.names(advance))
    return ["run", *column_order(name for name in names if name != "run")]


def shadowed_notes(histories: list[History]) -> list[str]:
    """Runs whose rows hold a metric named `run`, which the table's run column hides (ganterm refuses the name now)."""
    return [
        f"{history.run.name}: left out its metric 'run' (the table's run column holds the run's name)"
        for history in histories
        if "run" in history.found
    ]


def write_csv(histories: list[History], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as CSV (pandas, trackio and spreadsheets read it); returns its columns."""
    columns = table_columns(histories, advance)
    names = columns[1:]
    with replacing(target) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for history in histories:
            run = history.run.name
            for chunk in history.chunks(advance):
                writer.writerows([run, *map(_cell, map(row.get, names, repeat("")))] for row in chunk)
    return columns


def _cell(value: Any) -> Any:
    """A CSV cell: null is written nan (pandas reads it back as NaN), true and false as 1 and 0."""
    if value is None:
        return "nan"
    return int(value) if value.__class__ is bool else value


def write_parquet(histories: list[History], target: Path, advance: Callable[[int], None]) -> list[str]:
    """The table as Parquet, in row groups of ROW_GROUP_ROWS: step int64, every other number float64."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = table_columns(histories, advance)
    types = {"run": pa.string(), "step": pa.int64()}
    schema = pa.schema([(name, types.get(name, pa.float64())) for name in columns])
    with replacing(target) as temp, pq.ParquetWriter(temp, schema) as writer:
        pending: list[pa.RecordBatch] = []
        held = 0
        for history in histories:
            for chunk in history.chunks(advance):
                pending.append(_batch(chunk, history.run.name, schema))
                held += len(chunk)
                if held >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=held)
                    pending, held = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=held)
    return columns


def _batch(chunk: Rows, run: str, schema: Any) -> Any:
    import pyarrow as pa

    arrays = [pa.array([run] * len(chunk), pa.string()), pa.array([int(row["step"]) for row in chunk], pa.int64())]
    for field in schema:
        if field.name not in ("run", "step"):
            values = [row.get(field.name, _ABSENT) for row in chunk]
            arrays.append(_float64([None if v is _ABSENT else NAN if v is None else v for v in values]))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _float64(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values, pa.float64())
    except pa.ArrowInvalid:  # an int past 2**53, which pyarrow will not round: rounded here, as any float64 would
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
