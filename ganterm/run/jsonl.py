"""JSON Lines: the format of metrics, events and control commands.

Writers append whole lines in one `write`; readers keep a torn last line
until its newline arrives. NaN and infinity are written as null.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import orjson

from ganterm.run.layout import RunDir
from ganterm.run.text import clipped


def float32_precision(value: float) -> float:
    """A statistic computed in float32, without the float64 digits it never had: shorter lines, faster viewers."""
    return float(f"{value:.7g}")


def dumps(record: dict[str, Any]) -> bytes:
    """One JSON line; orjson writes NaN and infinity as null, as the contract asks."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class JsonlWriter:
    """Appends records to a JSONL file, each batch in a single write call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        data = b"".join(dumps(r) for r in records)
        if data:
            _write_all(self._fd, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record; O_APPEND keeps concurrent writers' lines whole."""
    with JsonlWriter(path) as writer:
        writer.write([record])


def record_event(run: RunDir, kind: str, step: int, **fields: Any) -> None:
    """One event, its texts clipped to a few KB (`text.clip`)."""
    append_jsonl(run.events, clipped({"t": time.time(), "step": step, "kind": kind, **fields}))


class LineTail:
    """Reads the complete lines appended to a file since the last call.

    A torn last line is kept back until its newline arrives. If the file is
    replaced or shrinks (a resumed run rewinds its metrics), `reset` turns
    true and reading restarts from the top, so the caller can drop what it had.
    """

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = path
        self.offset = 0
        self.reset = False
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        if from_end and path.exists():
            stat = path.stat()
            self.offset, self._identity = stat.st_size, (stat.st_dev, stat.st_ino)

    def start_at(self, offset: int) -> None:
        """Read on from `offset` (a line start), as if everything before it had been read."""
        stat = self.path.stat()
        self.offset, self._identity = offset, (stat.st_dev, stat.st_ino)

    def read_lines(self, max_bytes: int | None = None) -> list[bytes]:
        self.reset = False
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is not None and (identity != self._identity or stat.st_size < self.offset):
            self.offset, self._partial, self.reset = 0, b"", True
        self._identity = identity
        if stat.st_size <= self.offset:
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(max_bytes if max_bytes is not None else -1)
        except FileNotFoundError:  # removed since the stat above (a run deleted while watched): as if not there yet
            return []
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return lines

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk not yet read; lets a reader tell history from live tail."""
        try:
            return max(0, self.path.stat().st_size - self.offset)
        except FileNotFoundError:
            return 0


class TextTail(LineTail):
    """New lines of a text file (the worker log)."""

    def read(self, max_bytes: int | None = None) -> list[str]:
        return [line.decode(errors="replace") for line in self.read_lines(max_bytes)]


class JsonlTail(LineTail):
    """New records of a JSONL file; a line that does not parse is skipped and counted.

    `loads` parses one line (orjson's by default); it raises ValueError for a line it cannot read.
    """

    def __init__(self, path: Path, from_end: bool = False, loads: Callable[[bytes], Any] = orjson.loads) -> None:
        super().__init__(path, from_end)
        self.bad_lines = 0
        self._loads = loads

    def read(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        records = []
        for line in self.read_lines(max_bytes):
            if not line.strip():
                continue
            try:
                record = self._loads(line)
            except ValueError:  # orjson's JSONDecodeError and the json module's are ValueErrors
                self.bad_lines += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                self.bad_lines += 1
        return records


ROW_RULE = "a whole-number step from 0 to 2^63 - 1, a number t, and numbers or null"
MAX_STEP = 2**63 - 1  # int64, as numpy, Parquet and TensorBoard hold a step
EVENT_RULE = "a whole-number step, a number t, a kind, and text where text belongs"
_EVENT_TEXT = ("kind", "check", "severity", "message", "state", "error", "path", "refused")


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_row(record: dict[str, Any]) -> bool:
    """A metrics row a viewer can use: see ROW_RULE. Other writers' mistakes must not crash a viewer."""
    if not (_whole(record.get("step")) and 0 <= record["step"] <= MAX_STEP and _finite(record.get("t"))):
        return False
    return all(value is None or isinstance(value, (int, float)) for value in record.values())


def valid_event(record: dict[str, Any]) -> bool:
    """An event a viewer can use: see EVENT_RULE."""
    if not (_whole(record.get("step")) and _finite(record.get("t")) and isinstance(record.get("kind"), str)):
        return False
    return all(isinstance(record[key], str) for key in _EVENT_TEXT if key in record)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return JsonlTail(path).read()


TAIL_CHUNK_BYTES = 65536
TAIL_LIMIT_BYTES = 1 << 20  # about 25,000 rows of a ganterm run: the newest values, never a long run's whole file


def latest_values(path: Path, wanted: Collection[str]) -> dict[str, Any]:
    """Each key's newest value in a JSONL file, read back from its end.

    A statistic logged every fifth step is missing from most rows, so the newest
    row alone would show it as absent. Reading stops once every key of `wanted`
    has a value, or after TAIL_LIMIT_BYTES, so a long run's file is not read whole.
    """
    found: dict[str, Any] = {}
    try:
        with open(path, "rb") as handle:
            end = position = handle.seek(0, os.SEEK_END)
            head = b""  # a line cut by the chunk's start: its beginning is in the next chunk back
            while position > 0 and end - position < TAIL_LIMIT_BYTES and not all(key in found for key in wanted):
                start = max(0, position - TAIL_CHUNK_BYTES)
                handle.seek(start)
                lines = (handle.read(position - start) + head).split(b"\n")
                head = lines.pop(0) if start > 0 else b""
                position = start
                for line in reversed(lines):
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a torn last line, or another writer's mistake
                    if isinstance(record, dict):
                        for key, value in record.items():
                            found.setdefault(key, value)
    except FileNotFoundError:
        pass  # no metrics yet
    return found
