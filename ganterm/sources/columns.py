"""Metrics rows to columns: each metric's steps and values as numpy arrays, parsed in few calls.

Every reader of a history shares it: the dashboard (in its helper processes
too), and `open_run(...).history()`. A million rows of JSON Lines parse in
seconds only when rows of one shape are converted together.
"""

from __future__ import annotations

import gc
import math
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

import numpy as np
import orjson

from ganterm.run.jsonl import MAX_STEP

Columns = dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values), in step order


def value_dtype(name: str) -> type[np.floating]:
    """float32 halves the memory of a long run; wall-clock seconds need float64 (float32 steps by 128 s)."""
    return np.float64 if name == "t" else np.float32


def parse_lines(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Records of complete JSONL lines, parsed in one call; a bad line is skipped and counted."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return [], 0
    try:
        with _no_gc():
            records = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        records = _parse_each(lines)
    good = [record for record in records if isinstance(record, dict)]
    return good, len(lines) - len(good)


def _parse_each(lines: list[bytes]) -> list[Any]:
    """A chunk holding a bad line: each line parsed alone (several times slower), the bad ones left out."""
    records = []
    for line in lines:
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return records


@contextmanager
def _no_gc() -> Iterator[None]:
    """A million small dicts would trigger the cycle collector again and again; they hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def columns_from_rows(
    rows: list[dict], wanted: Callable[[str], bool] = lambda name: True
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Rows of one chunk → per-metric (steps, values) in step order, and how many rows were malformed.

    A row needs a whole-number step below 2^63, a finite number t, and numbers or null (NaN) as the values read
    (`ganterm.run.jsonl.ROW_RULE`); any other row is left out whole and counted. Rows are grouped by
    their key sequence (a worker writes a few shapes of row, over and over) so each group is checked
    and converted to numbers in a few numpy calls. Only the `wanted` metrics are converted.
    """
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    bad = 0
    for all_keys, group in _by_shape(rows):
        if "step" not in all_keys or "t" not in all_keys:
            bad += len(group)
            continue
        keys = tuple(name for name in all_keys if name in ("step", "t") or wanted(name))
        table, good = _numbers(keys, group)
        steps, times = table[:, keys.index("step")], table[:, keys.index("t")]
        with np.errstate(invalid="ignore"):  # NaN and inf fail these; MAX_STEP + 1 (2^63) is exact as a float
            good &= np.isfinite(times) & (steps >= 0) & (steps < MAX_STEP + 1) & (steps == np.floor(steps))
        good &= ~_boolean_steps(group)
        bad += len(group) - int(good.sum())
        steps = steps[good].astype(np.int64)
        for index, name in enumerate(keys):
            if name != "step" and wanted(name):
                parts.setdefault(name, []).append((steps, table[good, index].astype(value_dtype(name))))
    columns = {}
    for name, pieces in parts.items():
        steps = np.concatenate([p[0] for p in pieces]) if len(pieces) > 1 else pieces[0][0]
        values = np.concatenate([p[1] for p in pieces]) if len(pieces) > 1 else pieces[0][1]
        columns[name] = in_step_order(steps, values)
    return columns, bad


def in_step_order(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step, stably (points of one step keep their order); sorted arrays come back as they are."""
    if len(steps) > 1 and (steps[1:] < steps[:-1]).any():
        order = np.argsort(steps, kind="stable")
        return steps[order], values[order]
    return steps, values


def columns_in_step_order(columns: Columns) -> Columns:
    """Each column sorted by step, as `in_step_order` sorts one."""
    return {name: in_step_order(steps, values) for name, (steps, values) in columns.items()}


def newest_step(columns: Columns) -> int | None:
    """The newest step any column logged (columns in step order); None when none logged any."""
    return max((int(steps[-1]) for steps, _ in columns.values() if len(steps)), default=None)


def merge_columns(pieces: list[dict[str, tuple[np.ndarray, np.ndarray]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Columns of consecutive stretches of a file, oldest first, as one set of columns."""
    if len(pieces) == 1:
        return pieces[0]
    names = dict.fromkeys(name for piece in pieces for name in piece)
    return {
        name: (
            np.concatenate([piece[name][0] for piece in pieces if name in piece]),
            np.concatenate([piece[name][1] for piece in pieces if name in piece]),
        )
        for name in names
    }


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: np.unique's answer, which numpy 2.4 hashes its way to 13x slower (4M steps:
    3.8 s against 0.3 s)."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def history_table(columns: Columns) -> dict[str, np.ndarray]:
    """One array per metric over every logged step, NaN where a step did not log it, and a `step` column."""
    if not columns:
        return {"step": np.zeros(0, dtype=np.int64)}
    steps = distinct(np.concatenate([steps for steps, _ in columns.values()]))
    table: dict[str, np.ndarray] = {"step": steps}
    for name, (metric_steps, values) in columns.items():
        full = np.full(len(steps), math.nan, dtype=np.float64)
        full[np.searchsorted(steps, metric_steps)] = values  # a step logged twice keeps its newest value
        table[name] = full
    return table


def _by_shape(rows: list[dict]) -> Iterator[tuple[tuple[str, ...], list[dict]]]:
    """Rows grouped by their exact key sequence; the common one-or-two-shape case stays in C loops."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    for length in np.unique(lengths):
        picked = np.flatnonzero(lengths == length).tolist()
        group = [rows[i] for i in picked]
        keys = tuple(group[0])
        if all(map(keys.__eq__, map(tuple, group))):
            yield keys, group
            continue
        shapes: dict[tuple[str, ...], list[dict]] = {}
        for row in group:
            shapes.setdefault(tuple(row), []).append(row)
        yield from shapes.items()


_STEP = operator.itemgetter("step")


def _boolean_steps(group: list[dict]) -> np.ndarray:
    """Which rows have JSON's true or false as their step: numpy reads them as 1 and 0, the row rule as no step.

    Looking at each step's type is a C loop; the per-row check runs only when a boolean is there.
    """
    if bool not in set(map(type, map(_STEP, group))):
        return np.zeros(len(group), dtype=bool)
    return np.fromiter((type(step) is bool for step in map(_STEP, group)), dtype=bool, count=len(group))


def _numbers(keys: tuple[str, ...], group: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """A (rows, keys) float64 table, null as NaN, and which rows hold only numbers and nulls.

    The fast path (null read as NaN) fails only on strings or nested values; then each row is looked at.
    """
    pick = operator.itemgetter(*keys)  # a tuple: keys hold step and t at least
    try:
        flat = np.fromiter(chain.from_iterable(map(pick, group)), dtype=np.float64, count=len(group) * len(keys))
        return flat.reshape(len(group), len(keys)), np.ones(len(group), dtype=bool)
    except (TypeError, ValueError):
        return _numbers_row_by_row(keys, [pick(row) for row in group])


def _numbers_row_by_row(keys: tuple[str, ...], picked: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """`_numbers` for a group holding a string or a nested value: each value looked at (4x slower on 200,000 rows)."""
    good = np.fromiter(
        (all(v is None or isinstance(v, (int, float)) for v in values)
         for values in picked), dtype=bool, count=len(picked),
    )  # fmt: skip
    table = [[v if isinstance(v, (int, float)) else math.nan for v in values] for values in picked]
    return np.array(table, dtype=np.float64).reshape(len(picked), len(keys)), good
