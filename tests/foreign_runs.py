"""A stand-in for another tool's log format, for the tests of runs ganterm did not write (no TensorBoard needed).

A fake run is a folder holding `fake.log`: JSON lines of `{"tag", "step", "value"}` (a scalar),
`{"tag", "step", "image"}` (a file name in the folder, or `"bytes:<hex>"` for encoded bytes),
`{"config": {...}}`, `{"skip": "histogram"}` (a record no scalar nor image) and anything
unreadable (a corrupt record). Its reader hands the newest `newest` lines first and the older
lines afterwards, newest first, `piece` lines a poll with `more=True`, as the real readers do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest

from ganterm.sources import Format
from ganterm.sources.logbatch import LogBatch, LogImage, Series

LOG = "fake.log"


class FakeReader:
    """Follows a fake run's fake.log from the start; a line without its newline waits, as a torn record does."""

    newest = 200
    piece = 300
    closed: ClassVar[list[Path]] = []  # every reader closed, across instances

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offset = 0
        self.older: list[bytes] = []  # history lines not yet handed over, oldest first

    def poll(self) -> LogBatch:
        batch = LogBatch()
        path = self.folder / LOG
        data = path.read_bytes() if path.exists() else b""
        if len(data) < self.offset:
            self.offset, self.older, batch.reset = 0, [], True
        whole = data[self.offset : data.rfind(b"\n") + 1] if b"\n" in data[self.offset :] else b""
        self.offset += len(whole)
        lines = whole.splitlines()
        if batch.reset or self.offset == len(whole):  # the first read: the newest first, the rest later
            self.older, lines = lines[: -self.newest] if len(lines) > self.newest else [], lines[-self.newest :]
        _add(batch, lines, batch.scalars)
        if self.older and not lines:
            piece, self.older = self.older[-self.piece :], self.older[: -self.piece]
            _add(batch, piece, batch.history)
        batch.more = bool(self.older)
        return batch

    def close(self) -> None:
        FakeReader.closed.append(self.folder)


def _add(batch: LogBatch, lines: list[bytes], series: Series) -> None:
    points: dict[str, list[tuple[int, float]]] = {}
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            batch.bad_records += 1
            continue
        if "config" in record:
            batch.config = record["config"]
        elif "skip" in record:
            batch.skipped[record["skip"]] = batch.skipped.get(record["skip"], 0) + 1
        elif "image" in record:
            image = record["image"]
            found = bytes.fromhex(image[6:]) if image.startswith("bytes:") else Path(image)
            batch.images.append(LogImage(record["tag"], record["step"], found))
        else:
            points.setdefault(record["tag"], []).append((record["step"], record["value"]))
    for tag, pairs in points.items():
        steps = np.array([step for step, _ in pairs], dtype=np.int64)
        values = np.array([value for _, value in pairs], dtype=np.float64)
        series[tag] = (steps, values)


def find_fake_runs(path: Path) -> list[Path]:
    """Every folder at or under `path` with a fake.log, as `tensorboard --logdir` finds runs."""
    return sorted(log.parent for log in Path(path).rglob(LOG))


def fake_format(kind: str = "tensorboard") -> Format:
    return Format(kind, find_fake_runs, FakeReader)


@pytest.fixture
def fake_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """`open_run` and `find_runs` know the fake format (as TensorBoard's), and only it."""
    import ganterm.sources

    monkeypatch.setattr(ganterm.sources, "formats", lambda: [fake_format()])


def write_log(folder: Path, records: list[dict[str, Any]], torn: bytes = b"") -> None:
    """Appends records to a fake run's log, and then `torn`: part of a record still being written."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOG, "ab") as handle:
        handle.write(b"".join(orjson.dumps(record) + b"\n" for record in records) + torn)


def dcgan_records(first: int, last: int, names: tuple[str, str, str, str] = ("Loss_D", "Loss_G", "D(x)", "D_G_z1")):
    """What the PyTorch DCGAN tutorial's loop would log through a SummaryWriter: losses and D's sigmoid means."""
    records = []
    for step in range(first, last + 1):
        wobble = math.sin(step / 7.0)
        values = (1.2 + 0.1 * wobble, 0.9 + 0.1 * wobble, 0.6 + 0.05 * wobble, 0.4 + 0.05 * wobble)
        records += [{"tag": name, "step": step, "value": value} for name, value in zip(names, values, strict=True)]
    return records
