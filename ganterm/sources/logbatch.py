"""What a reader of another tool's logs hands the viewer at each poll, in that tool's own names.

Other code logs a GAN run in its own format: TensorBoard event files, a
StyleGAN-style training folder. One reader per format turns what its files
gained since the last poll into a `LogBatch` of raw tags; the run built over
it maps the tags to ganterm's roles (`loss_d`, `d_x`, ...), so the panels, the
loss family and the health checks apply. A reader never writes and never
fails on a half-written last record: a writer that is still running leaves one
there as a matter of course, and the next poll reads it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ganterm.sources.columns import in_step_order

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (steps as int64, values as float64), in step order
Times = tuple[np.ndarray, np.ndarray]  # (steps as int64, unix seconds as float64): each step once, in step order


def no_times() -> Times:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def earliest_times(steps: np.ndarray, seconds: np.ndarray) -> Times:
    """Each step once, with its earliest wall time, in step order; times that are no finite number, and 0 (an
    event file's event that was given none: protocol buffers write no 0), left out.

    A step's tags are written moments apart, and an evaluation at a step comes minutes later: the earliest
    is the step's time, as the dashboard's clock (`SeriesStore.clock`) takes it, whatever order it was read in.
    """
    steps, seconds = np.asarray(steps, dtype=np.int64), np.asarray(seconds, dtype=np.float64)
    known = np.isfinite(seconds) & (seconds != 0)
    if not known.all():
        steps, seconds = steps[known], seconds[known]
    if len(steps) == 0:
        return no_times()
    steps, seconds = in_step_order(steps, seconds)
    starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])
    return steps[starts], np.minimum.reduceat(seconds, starts)


def merge_times(parts: list[Times]) -> Times:
    """The times of several stretches as one, each step once with its earliest time."""
    if not parts:
        return no_times()
    return earliest_times(np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts]))


@dataclass(frozen=True)
class LogImage:
    """One logged picture (an image summary, a saved grid): the encoded bytes as written, or its file."""

    tag: str
    step: int
    image: bytes | Path


@dataclass
class LogBatch:
    """What the followed files gained since the last poll."""

    scalars: Series = field(default_factory=dict)  # new points, after what was shown
    history: Series = field(default_factory=dict)  # older points, read after the newest: go in front
    # The wall time of the new points' steps, and of the older points' steps. A step whose events straddle two
    # stretches read apart (where the newest-first read began, two history pieces) comes with each, as its points
    # do: the earlier time is the step's, as `earliest_times` and the dashboard's clock take it.
    times: Times = field(default_factory=no_times)
    history_times: Times = field(default_factory=no_times)
    images: list[LogImage] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # records that are no scalar nor image, by kind
    bad_records: int = 0  # corrupt records (a bad checksum, an unreadable line) passed over
    reset: bool = False  # a file was replaced or cut back: drop what was shown and read again
    more: bool = False  # history still unread: poll again soon
    config: dict[str, Any] | None = None  # the run's settings as written, when they appeared or changed
    log_lines: list[str] = field(default_factory=list)  # new lines of a text log, if the format keeps one

    def __bool__(self) -> bool:
        return bool(self.scalars or self.history or self.images or self.skipped or self.bad_records
                    or self.reset or self.config is not None or self.log_lines)  # fmt: skip


def unreadable_note(path: Path, error: OSError) -> str:
    """The one sentence a reader says, once, of a file in its folder that it cannot open (another user's, 0600)."""
    return f"{path.name} cannot be read ({(error.strerror or type(error).__name__).lower()}): it is left out."


class LogReader(Protocol):
    """Follows one run's files from the start; `poll` from one thread only."""

    folder: Path

    def poll(self) -> LogBatch: ...

    def close(self) -> None:
        """Stops any helper process a long history was being read with."""
