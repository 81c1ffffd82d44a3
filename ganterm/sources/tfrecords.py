"""TFRecord framing, the container of TensorBoard event files: whole, checked records out of raw bytes.

Each record is a little-endian uint64 length, the masked CRC-32C of those 8
bytes, the data, and the masked CRC-32C of the data. A writer that is still
running leaves its last record half-written as a matter of course: that one is
waited for, never counted as corrupt. Bytes that fail a checksum are passed
over and reading picks up at the next position where a whole record checks
out, two 32-bit checksums over its header and its data; where a wrong pick
would cost the rest of a file (a boundary found in the middle of it), the
records after it must check out too. Reads only; needs the `crc32c` package.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

HEADER = 12  # length, and its checksum
FOOTER = 4  # the data's checksum
MAX_RECORD = 1 << 31  # a length past this is no record's: garbage whose bytes happened to pass the header's checksum
CHAIN = 3  # records that must check out in a row where a boundary is looked for in the middle of a file

_length = struct.Struct("<Q").unpack_from
_checksum = struct.Struct("<I").unpack_from


def masked_crc(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC-32C: the checksum rotated and offset, so data holding checksums stays checkable."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_size(buf: memoryview, pos: int) -> int:
    """Bytes of the whole record at `pos` when it checks out; 0 while it is not all there yet; -1 when corrupt."""
    end = len(buf)
    if pos + HEADER > end:
        return 0
    if masked_crc(buf[pos : pos + 8]) != _checksum(buf, pos + 8)[0]:
        return -1
    (length,) = _length(buf, pos)
    if length > MAX_RECORD:
        return -1
    data_end = pos + HEADER + length
    if data_end + FOOTER > end:
        return 0
    if masked_crc(buf[pos + HEADER : data_end]) != _checksum(buf, data_end)[0]:
        return -1
    return HEADER + length + FOOTER


def record_start(buf: memoryview, pos: int, chain: int = 1) -> int:
    """The first position from `pos` where `chain` records in a row check out, or a record still being written.

    A chain may end early at the end of `buf`; a position whose record is not all there yet cannot be
    judged and is returned, to be read again once it is. Past the last position, `len(buf)`.
    """
    end = len(buf)
    while pos < end:
        at, checked = pos, 0
        while checked < chain and at < end:
            size = record_size(buf, at)
            if size < 0:
                break
            checked, at = checked + 1, at + size
            if size == 0:
                return pos
        else:
            return pos
        pos += 1
    return end


@dataclass
class Scan:
    """The records found in a buffer, and where reading goes on."""

    records: list[memoryview] = field(default_factory=list)  # the data of each whole record, in file order
    stop: int = 0  # the end of the last whole record, or the start of one still being written
    bad: int = 0  # stretches of corrupt bytes passed over
    in_corrupt: bool = False  # the buffer ended inside corrupt bytes, already counted


def scan(buf: memoryview, pos: int = 0, in_corrupt: bool = False) -> Scan:
    """The records from `pos` on: each that checks out, corrupt stretches counted once and passed over."""
    found = Scan(in_corrupt=in_corrupt)
    while pos < len(buf):
        size = record_size(buf, pos)
        if size > 0:
            found.records.append(buf[pos + HEADER : pos + size - FOOTER])
            found.in_corrupt = False
            pos += size
            continue
        if size == 0:
            break
        if not found.in_corrupt:
            found.bad += 1
            found.in_corrupt = True
        pos = record_start(buf, pos + 1)
    found.stop = pos
    return found


def read_span(path: Path, start: int, end: int) -> Scan:
    """The records that start in bytes [start, end) of a file, the last one read whole even past `end`.

    `start` may fall anywhere: reading begins at the first boundary after it, where a chain of records
    checks out. Each piece of a file read in parallel starts where the one before it stopped.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        buf = memoryview(handle.read(end - start))
        first = 0 if start == 0 else record_start(buf, 0, CHAIN)
        found = scan(buf, first)
        if found.stop < len(buf):  # a record that starts here and ends past `end`
            handle.seek(start + found.stop)
            header = handle.read(HEADER)
            if len(header) == HEADER:
                handle.seek(start + found.stop)
                whole = memoryview(handle.read(HEADER + min(_length(header, 0)[0], MAX_RECORD) + FOOTER))
                size = record_size(whole, 0)
                if size > 0:
                    found.records.append(whole[HEADER : size - FOOTER])
                elif size < 0 and not found.in_corrupt:
                    found.bad += 1
    return found


class RecordTail:
    """The whole records appended to one file since the last read; a record still being written waits.

    If the file is replaced or cut back, `replaced()` says so: what was read of it no longer holds.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.behind = False  # the last read stopped at its limit, not at the end of the file
        self._in_corrupt = False
        self._identity = _identity(path)

    def replaced(self) -> bool:
        """The file is gone, is another file now, or is shorter than what was read of it."""
        if self._identity is None:
            return False
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self.offset

    def read(self, max_bytes: int) -> Scan:
        """The next whole records, about `max_bytes` of them (more when a single record is larger)."""
        if self._identity is None:
            self._identity = _identity(self.path)
        chunk = max_bytes
        while True:
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(self.offset)
                    buf = memoryview(handle.read(chunk))
            except FileNotFoundError:
                return Scan()
            found = scan(buf, in_corrupt=self._in_corrupt)
            if found.stop > 0 or len(buf) < chunk:
                break
            chunk *= 2  # one record larger than a chunk
        self.offset += found.stop
        self.behind = len(buf) == chunk
        self._in_corrupt = found.in_corrupt
        return found


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
