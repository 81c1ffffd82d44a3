"""TFRecord framing, the container of TensorBoard event files: whole, checked records out of raw bytes.

Each record is a little-endian uint64 length, the masked CRC-32C of those 8
bytes, the data, and the masked CRC-32C of the data. A writer that is still
running leaves its last record half-written as a matter of course: that one is
waited for, never counted as corrupt. Bytes that fail a checksum are passed
over and reading picks up at the next position where a whole record checks
out, two 32-bit checksums over its header and its data; where a wrong pick
would cost the rest of a file (a boundary found in the middle of it), the
records after it must check out too. The checksums of many short records are
computed together with numpy, a byte column at a time (a call per record was
most of the time of reading a long run); long and single ones by the `crc32c` package.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

try:
    from crc32c import crc32c
except ImportError:  # the tensorboard extra is missing: the reader says so in a sentence before it reads a record
    crc32c = None

HEADER = 12  # length, and its checksum
FOOTER = 4  # the data's checksum
MAX_RECORD = 1 << 31  # a length past this is no record's: garbage whose bytes happened to pass the header's checksum
SAMPLE = 64  # records walked one at a time before their lengths are looked at for a cycle
FIRST_STRETCH = 256  # records predicted from a cycle at first; doubled each time a prediction holds
SEARCH_BLOCK = 256  # positions whose headers are checked at once where a record is looked for, at first
MAX_SEARCH_BLOCK = 1 << 20  # and at most, each block twice the last
CHAIN = 3  # records that must check out in a row where a boundary is looked for in the middle of a file

_length = struct.Struct("<Q").unpack_from
_checksum = struct.Struct("<I").unpack_from


def masked_crc(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC-32C: the checksum rotated and offset, so data holding checksums stays checkable."""
    crc = crc32c(data)
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
    judged and is returned, to be read again once it is. Past the last position, `len(buf)`. Only the
    positions whose header checks out are looked at one at a time, found a block at a time (`_headers`):
    a byte at a time, a file of garbage took a second per megabyte.
    """
    data = np.frombuffer(buf, dtype=np.uint8)
    last, block = len(buf) - HEADER, SEARCH_BLOCK
    while pos <= last:
        count = min(block, last + 1 - pos)
        for candidate in _headers(data, pos, count).tolist():
            if _chain_holds(buf, candidate, chain):
                return candidate
        pos, block = pos + count, min(block * 2, MAX_SEARCH_BLOCK)
    return min(pos, len(buf))


def _chain_holds(buf: memoryview, pos: int, chain: int) -> bool:
    """`chain` records in a row check out from `pos`, or as many as there are before one still being written."""
    for _ in range(chain):
        if pos >= len(buf):
            return True
        size = record_size(buf, pos)
        if size <= 0:
            return size == 0
        pos += size
    return True


def _headers(data: np.ndarray, first: int, count: int) -> np.ndarray:
    """Of the `count` positions from `first`, those whose first 8 bytes' masked CRC-32C follows them."""
    crc = np.full(count, 0xFFFFFFFF, dtype=np.uint32)
    for index in range(8):
        crc = _CRC_TABLE[(crc ^ data[first + index : first + index + count]) & 0xFF] ^ (crc >> 8)
    stored = np.zeros(count, dtype=np.uint32)
    for index in range(4):
        stored |= data[first + 8 + index : first + 8 + index + count].astype(np.uint32) << np.uint32(8 * index)
    return first + np.flatnonzero(_masked(crc ^ np.uint32(0xFFFFFFFF)) == stored)


@dataclass
class Scan:
    """The records found in a buffer, as where each one's data lies in it, and where reading goes on."""

    buf: memoryview = field(default_factory=lambda: memoryview(b""))
    starts: list[int] = field(default_factory=list)  # where each whole record's data starts in `buf`, in file order
    ends: list[int] = field(default_factory=list)  # and where it ends
    stop: int = 0  # the end of the last whole record, or the start of one still being written
    bad: int = 0  # stretches of corrupt bytes passed over
    in_corrupt: bool = False  # the buffer ended inside corrupt bytes, already counted


def scan(buf: memoryview, pos: int = 0, in_corrupt: bool = False) -> Scan:
    """The records from `pos` on: each that checks out, corrupt stretches counted once and passed over.

    The records are walked by their lengths, then checked many at a time (`_first_unchecked`); only a
    record that fails is looked at alone, to tell corrupt bytes from a record still being written.
    """
    found = Scan(buf, in_corrupt=in_corrupt)
    data = np.frombuffer(buf, dtype=np.uint8)
    while pos < len(buf):
        heads, lengths = _walk(buf, pos)
        good = _first_unchecked(data, heads, lengths)
        if good:
            starts = heads[:good] + HEADER
            found.starts += starts.tolist()
            found.ends += (starts + lengths[:good]).tolist()
            found.in_corrupt = False
            pos = int(starts[-1] + lengths[good - 1]) + FOOTER
        if good < len(heads) or record_size(buf, pos) < 0:
            if not found.in_corrupt:
                found.bad += 1
                found.in_corrupt = True
            pos = record_start(buf, pos + 1)
        elif good == 0:
            break  # a record still being written
    found.stop = pos
    return found


def _walk(buf: memoryview, pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the records from `pos` start, by their lengths alone, as far as whole records go.

    A long run's records repeat a few lengths in a cycle (one event per tag per step). Once the last
    SAMPLE records walked show a cycle, the next stretch is predicted from it and checked against the
    lengths written there, all at once; from the first that differs, walking goes on one at a time.
    A stretch that held doubles the next one's length, one that failed starts again short.
    """
    heads: list[int] = []
    lengths: list[int] = []
    stretch, end = FIRST_STRETCH, len(buf)
    while True:
        for _ in range(SAMPLE):
            if pos + HEADER > end:
                break
            (length,) = _length(buf, pos)
            if pos + HEADER + length + FOOTER > end:
                break
            heads.append(pos)
            lengths.append(length)
            pos += HEADER + length + FOOTER
        else:
            predicted, pos = _predicted(buf, pos, lengths[-SAMPLE:], stretch)
            heads += predicted[0].tolist()
            lengths += predicted[1].tolist()
            stretch = stretch * 2 if len(predicted[0]) == stretch else FIRST_STRETCH
            continue
        return np.array(heads, dtype=np.int64), np.array(lengths, dtype=np.int64)


def _predicted(buf: memoryview, pos: int, recent: list[int], stretch: int) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """Up to `stretch` records from `pos` whose lengths continue the cycle of `recent`, and where they end."""
    period = next((p for p in range(1, len(recent) // 2 + 1) if recent[p:] == recent[:-p]), 0)
    if period == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64)), pos
    cycle = np.array(recent[-period:], dtype=np.int64)
    lengths = np.tile(cycle, stretch // period + 1)[:stretch]
    ends = pos + np.cumsum(lengths + HEADER + FOOTER)
    fits = int(np.searchsorted(ends, len(buf), side="right"))
    lengths, ends = lengths[:fits], ends[:fits]
    heads = ends - lengths - HEADER - FOOTER
    data = np.frombuffer(buf, dtype=np.uint8)
    written = data[heads[:, None] + np.arange(8)].copy().view("<u8")[:, 0]
    held = len(heads) if (written == lengths).all() else int(np.argmin(written == lengths))
    return (heads[:held], lengths[:held]), int(ends[held - 1]) if held else pos


def _first_unchecked(data: np.ndarray, heads: np.ndarray, lengths: np.ndarray) -> int:
    """How many of the walked records, from the first, check out: both checksums, computed per length at once."""
    ok = _masked(_crc_many(data, heads, 8)) == _stored(data, heads + 8)
    for length in np.unique(lengths).tolist():
        same = np.flatnonzero(lengths == length)
        ok[same] &= _masked(_crc_many(data, heads[same] + HEADER, length)) == _stored(
            data, heads[same] + HEADER + length
        )
    return len(ok) if ok.all() else int(np.argmin(ok))


def _crc_many(data: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """CRC-32C of `length` bytes at each of `starts`: a byte column at a time when they are many and short."""
    if len(starts) < 16 or length > 1024:
        return np.array([crc32c(data[start : start + length]) for start in starts.tolist()], dtype=np.uint32)
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    for index in range(length):
        crc = _CRC_TABLE[(crc ^ data[starts + index]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def _masked(crc: np.ndarray) -> np.ndarray:
    return ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)


def _stored(data: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The little-endian uint32 checksums written at `at`."""
    return data[at[:, None] + np.arange(4)].copy().view("<u4")[:, 0]


def _crc_table() -> np.ndarray:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one byte at a time."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return np.array(table, dtype=np.uint32)


_CRC_TABLE = _crc_table()


def read_span(path: Path, start: int, end: int) -> Scan:
    """The records that start in bytes [start, end) of a file, the last one read whole even past `end`.

    `start` may fall anywhere: reading begins at the first boundary after it, where a chain of records
    checks out. Each piece of a file read in parallel starts where the one before it stopped.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        buf = memoryview(handle.read(end - start))
        found = scan(buf, 0 if start == 0 else record_start(buf, 0, CHAIN))
        if found.stop < len(buf):  # a record that starts here and ends past `end`
            _read_last_record(handle, start, found)
    return found


def _read_last_record(handle: BinaryIO, start: int, found: Scan) -> None:
    """Adds the record that starts at `found.stop` and ends past the buffer, read from `handle` (at `start`).

    Its length is trusted only once its header checks out, and read only when the file holds it all: garbage
    would have it read up to MAX_RECORD bytes.
    """
    handle.seek(start + found.stop)
    header = memoryview(handle.read(HEADER))
    if len(header) < HEADER:
        return
    if record_size(header, 0) < 0:
        found.bad += not found.in_corrupt
        return
    record_end = start + found.stop + HEADER + _length(header, 0)[0] + FOOTER
    if os.fstat(handle.fileno()).st_size < record_end:
        return  # still being written
    handle.seek(start + len(found.buf))
    whole = memoryview(bytes(found.buf) + handle.read(record_end - start - len(found.buf)))
    size = record_size(whole, found.stop)
    if size > 0:
        found.buf = whole
        found.starts.append(found.stop + HEADER)
        found.ends.append(found.stop + size - FOOTER)
    elif not found.in_corrupt:
        found.bad += 1


class RecordTail:
    """The whole records appended to one file since the last read; a record still being written waits.

    If the file is replaced or cut back, `replaced()` says so: what was read of it no longer holds.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.behind = False  # the last read stopped at its limit, not at the end of the file
        self._in_corrupt = False
        self._whole_at = 0  # the file size at which a long record still being written at `offset` is all there
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
        try:
            with open(self.path, "rb") as handle:
                file_size = os.fstat(handle.fileno()).st_size
                if file_size < self._whole_at:
                    return Scan()
                handle.seek(self.offset)
                buf = memoryview(handle.read(max_bytes))
                found = scan(buf, in_corrupt=self._in_corrupt)
                if found.stop == 0 and len(buf) == max_bytes:  # one record, checked header and all, past max_bytes
                    self._whole_at = self.offset + HEADER + _length(buf, 0)[0] + FOOTER
                    if file_size < self._whole_at:  # not all written yet: read again once it is
                        self.behind = False
                        return Scan()
                    handle.seek(self.offset)
                    buf = memoryview(handle.read(self._whole_at - self.offset))
                    found = scan(buf, in_corrupt=self._in_corrupt)
        except OSError:  # gone, or no longer ours to read: nothing new
            return Scan()
        self.behind = self.offset + len(buf) < file_size
        self.offset += found.stop
        self._in_corrupt = found.in_corrupt
        return found


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
