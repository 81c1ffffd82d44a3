"""Metric series held compactly, and cut down to what a terminal can show.

A million logged steps must open in seconds and redraw in milliseconds, so
points live in growing numpy arrays (8 bytes a point) and every redraw
reduces the visible window to min/max buckets: a spike in one step still
shows, and no plot is handed more points than it has cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ganterm.run.schema import NOT_PLOTTED_ALONE, QUALITY_FIRST
from ganterm.sources.columns import value_dtype


class Series:
    """One metric's (step, value) points in arrival order, in buffers that grow at both ends.

    History arrives newest chunk first and goes in front; live points go at the back. Either
    way a full buffer doubles, so a million points cost O(n) copying, not a copy per chunk.
    """

    def __init__(self, dtype: type[np.floating] = np.float32) -> None:
        self._steps = np.empty(256, dtype=np.int64)
        self._values = np.empty(256, dtype=dtype)
        self._start = self._end = 128

    @property
    def size(self) -> int:
        return self._end - self._start

    def _make_room(self, front: int, back: int) -> None:
        if self._start >= front and len(self._steps) - self._end >= back:
            return
        size = self.size
        capacity = 2 * (size + front + back) + 256
        start = front + (capacity - size - front - back) // 2  # spare room on both sides
        for name in ("_steps", "_values"):
            old = getattr(self, name)
            grown = np.empty(capacity, dtype=old.dtype)
            grown[start : start + size] = old[self._start : self._end]
            setattr(self, name, grown)
        self._start, self._end = start, start + size

    def prepend(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Older points read after the newest ones (history fills in behind the live tail)."""
        self._make_room(len(steps), 0)
        self._start -= len(steps)
        self._steps[self._start : self._start + len(steps)] = steps
        self._values[self._start : self._start + len(steps)] = values

    def extend(self, steps: np.ndarray, values: np.ndarray) -> None:
        self._make_room(0, len(steps))
        self._steps[self._end : self._end + len(steps)] = steps
        self._values[self._end : self._end + len(steps)] = values
        self._end += len(steps)

    @property
    def steps(self) -> np.ndarray:
        return self._steps[self._start : self._end]

    @property
    def values(self) -> np.ndarray:
        return self._values[self._start : self._end]

    def last(self) -> float | None:
        """The newest finite value, for the number printed beside a series name."""
        finite = np.flatnonzero(np.isfinite(self.values[-64:]))
        return float(self.values[-64:][finite[-1]]) if len(finite) else None

    def since(self, step: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Points after `step` (all when None)."""
        if step is None or self.size == 0:
            return self.steps, self.values
        start = int(np.searchsorted(self.steps, step, side="right"))
        return self.steps[start:], self.values[start:]


class SeriesStore:
    """One run's metrics.jsonl: a series per plotted metric, only the newest value of the rest."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.latest: dict[str, float] = {}
        self.rows = 0
        self._clock: tuple[int, np.ndarray, np.ndarray] | None = None

    def add_columns(
        self, columns: Mapping[str, tuple[np.ndarray, np.ndarray]], rows: int, history: bool = False
    ) -> None:
        """Append new points, or with `history` put older ones in front."""
        for name, (steps, values) in columns.items():
            if name in NOT_PLOTTED_ALONE and name != "t":
                finite = np.flatnonzero(np.isfinite(values))
                if len(finite) and not (history and name in self.latest):
                    self.latest[name] = float(values[finite[-1]])
                continue
            series = self.series.setdefault(name, Series(value_dtype(name)))
            (series.prepend if history else series.extend)(steps, values)
        self.rows += rows

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def clock(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Each step's earliest wall-clock time (steps in order): its training row's, not a quality row's.

        A quality row comes later at the same step (a finished run's last one may wait minutes for its
        classifier), so taking every `t` would make the time axis depend on when the file was read.
        Kept until `t` grows, as a redraw asks once per panel.
        """
        times = self.series.get("t")
        if times is None or times.size == 0:
            return None
        if self._clock is None or self._clock[0] != times.size:
            steps = times.steps
            starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])  # rows of a step are not in file order
            self._clock = (times.size, steps[starts], np.minimum.reduceat(times.values, starts))
        return self._clock[1], self._clock[2]

    def last(self, name: str) -> float | None:
        series = self.series.get(name)
        return series.last() if series is not None else self.latest.get(name)

    def last_step(self) -> int:
        return max((int(s.steps[-1]) for s in self.series.values() if s.size), default=0)

    def extra_names(self, dedicated: Iterable[str]) -> set[str]:
        """Numeric metrics with no dedicated panel: quality metrics, or whatever a user's loop logs."""
        skip = NOT_PLOTTED_ALONE | set(dedicated)
        return {name for name in self.series if name not in skip}


def panel_order(name: str) -> tuple[int, str]:
    """The quality measures that move most come first; then anything else by name."""
    return (QUALITY_FIRST.index(name) if name in QUALITY_FIRST else len(QUALITY_FIRST), name)


def _buckets(count: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Start index and size of each of `buckets` near-equal runs of `count` points."""
    starts = np.linspace(0, count, buckets + 1).astype(np.int64)[:-1]
    return starts, np.diff(np.append(starts, count))


def envelope(steps: np.ndarray, values: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middle step, min and max of each bucket: at most `buckets` points, and spikes survive.

    The buckets and their steps are `bucket_means`' own, so the spread sits exactly behind the mean line.
    """
    if len(steps) <= buckets:
        as_float = values.astype(np.float64)
        return steps.astype(np.float64), as_float, as_float
    starts, sizes = _buckets(len(steps), buckets)
    with np.errstate(invalid="ignore"):
        lows = np.fmin.reduceat(values, starts).astype(np.float64)
        highs = np.fmax.reduceat(values, starts).astype(np.float64)
    return steps[starts + sizes // 2].astype(np.float64), lows, highs


def bucket_means(steps: np.ndarray, values: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middle step, mean finite value and point count of each bucket (count 1 per point when few)."""
    if len(steps) <= buckets:
        return steps.astype(np.float64), values.astype(np.float64), np.ones(len(steps))
    starts, sizes = _buckets(len(steps), buckets)
    sums = np.add.reduceat(values, starts, dtype=np.float64)
    counts = sizes.astype(np.float64)
    if not np.isfinite(sums).all():  # gaps somewhere: the slower, NaN-aware sums
        finite = np.isfinite(values)
        counts = np.add.reduceat(finite, starts, dtype=np.float64)
        sums = np.add.reduceat(np.where(finite, values, 0), starts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return steps[starts + sizes // 2].astype(np.float64), sums / counts, sizes.astype(np.float64)


def smooth(values: np.ndarray, weight: float, sizes: np.ndarray | None = None) -> np.ndarray:
    """De-biased exponential moving average, as TensorBoard draws it.

    A point standing for `size` raw steps decays the average by weight**size,
    so the curve looks the same zoomed in or out. Gaps (NaN) are skipped.
    """
    out = np.full(len(values), np.nan)
    if weight <= 0:
        return values.astype(np.float64)
    average = debias = 0.0
    for i, value in enumerate(values.tolist()):
        if not math.isfinite(value):
            continue
        decay = weight ** (1.0 if sizes is None else float(sizes[i]))
        average = average * decay + (1 - decay) * value
        debias = debias * decay + (1 - decay)
        out[i] = average / debias
    return out
