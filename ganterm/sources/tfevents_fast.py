"""The common scalar event, decoded many records at a time with numpy instead of one message at a time.

`SummaryWriter.add_scalar` (torch's, tensorboardX's) writes one event per tag
per step, all of one shape: wall_time, step, and a summary of one value, a tag
and a `simple_value`. Decoded one by one through the protobuf classes, such
events take most of the time of reading a long run (docs/watching.md has the
figures); here each byte of that shape is checked for all records at once.
Any record of another shape, or whose bytes differ in the least (a step of 0
is not written at all, a second value, a tag longer than 118 bytes), is left
to the protobuf classes: this only ever takes the records it can vouch for.
"""

from __future__ import annotations

import numpy as np

from ganterm.sources.logbatch import Times, no_times

# Protocol-buffer keys: field number << 3 | wire type
WALL_TIME = 0x09  # Event.wall_time, 8 bytes
STEP = 0x10  # Event.step, a varint
SUMMARY = 0x2A  # Event.summary, length-delimited
VALUE = 0x0A  # Summary.value, length-delimited
TAG = 0x0A  # Summary.Value.tag, length-delimited
SIMPLE_VALUE = 0x15  # Summary.Value.simple_value, 4 bytes
STEP_BYTES = 9  # a varint this long holds any step below 2**63
PAST_END = 512  # zeros after the buffer: every byte the shape is looked at in lies within 300 of a record's start
_HASH_WEIGHTS = np.random.default_rng(0).integers(1, 2**63, size=128, dtype=np.uint64) | np.uint64(1)


def common_scalars(
    buf: memoryview, starts: np.ndarray, ends: np.ndarray
) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], np.ndarray, Times]:
    """The points of the records in the common shape, per tag in file order, which records those were, and
    their steps and wall times (unix seconds), in file order.

    `starts` and `ends`: where each record's data lies in `buf`.
    """
    if len(starts) == 0:
        return {}, np.zeros(0, dtype=bool), no_times()
    data = np.concatenate([np.frombuffer(buf, dtype=np.uint8), np.zeros(PAST_END, dtype=np.uint8)])

    def byte(at: np.ndarray) -> np.ndarray:
        return data[at].astype(np.int64)

    ok = (byte(starts) == WALL_TIME) & (byte(starts + 9) == STEP)
    steps, step_bytes, going = np.zeros(len(starts), np.int64), np.zeros(len(starts), np.int64), ok.copy()
    for index in range(STEP_BYTES):
        part = byte(starts + 10 + index)
        steps |= np.where(going, (part & 0x7F) << (7 * index), 0)
        step_bytes += going
        going &= part >= 0x80
        if not going.any():
            break
    at = starts + 10 + step_bytes  # the summary's key
    tag_length = byte(at + 5)
    # each length is one byte: a summary of 128 bytes or more writes its length in two, and the second,
    # 0x01 or more, is then where the value's key 0x0A is looked for
    ok &= ~going & (byte(at) == SUMMARY) & (byte(at + 1) == tag_length + 9) & (byte(at + 2) == VALUE)
    ok &= (byte(at + 3) == tag_length + 7) & (byte(at + 4) == TAG)
    ok &= (byte(at + 6 + tag_length) == SIMPLE_VALUE) & (at + 11 + tag_length == ends)
    picked = np.flatnonzero(ok)
    values_at = (at + 7 + tag_length)[picked]
    values = data[values_at[:, None] + np.arange(4)].copy().view("<f4")[:, 0].astype(np.float64)
    points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for length in np.unique(tag_length[picked]).tolist():
        rows = picked[tag_length[picked] == length]
        for tag, members in _tags(data, at[rows] + 6, length):
            if tag is None:
                ok[rows[members]] = False
                continue
            index = np.searchsorted(picked, rows[members])
            points.setdefault(tag, []).append((steps[rows[members]], values[index]))
    taken = np.flatnonzero(ok)  # each record's 8 bytes after the key, copied as rows of a window view: 3x faster
    wall_times = np.lib.stride_tricks.sliding_window_view(data, 8)[starts[taken] + 1].view("<f8")[:, 0]
    return points, ok, (steps[taken], wall_times)


def _tags(data: np.ndarray, starts: np.ndarray, length: int) -> list[tuple[str | None, np.ndarray]]:
    """Records grouped by their tag of `length` bytes at `starts`, each group in file order.

    Grouped by a hash of the bytes, then each member compared byte for byte with the group's first:
    a member that differs (a collision), or a tag that is no UTF-8, is handed back under None.
    """
    if length == 0:
        return [("", np.arange(len(starts)))]
    tags = data[starts[:, None] + np.arange(length)]
    keys = (tags.astype(np.uint64) * _HASH_WEIGHTS[:length]).sum(axis=1, dtype=np.uint64)
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    groups = []
    for members in np.split(order, cuts):
        members = np.sort(members)
        same = (tags[members] == tags[members[0]]).all(axis=1)
        try:
            tag = tags[members[0]].tobytes().decode()
        except UnicodeDecodeError:
            groups.append((None, members))
            continue
        groups.append((tag, members[same]))
        if not same.all():
            groups.append((None, members[~same]))
    return groups
