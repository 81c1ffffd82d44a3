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

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (steps as int64, values as float64), in step order


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
