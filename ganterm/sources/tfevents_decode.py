"""TensorBoard events to raw scalars and images, by tensorboardX's protos; every other kind counted, by name.

Scalars come as `simple_value` (torch's and tensorboardX's writers) or as a
one-number tensor (TensorFlow 2, `new_style=True`); images as image summaries
or TensorFlow 2's image tensors (a string tensor: width, height, encoded
images). Histograms, text, audio, PR curves and hparams are skipped and
counted by kind, and so are the events that hold no summary (a graph, run
metadata, a session log), except each file's leading `file_version`, which
says nothing about the run. A tensor's plugin is named only in the first
value of its tag, so a decoder remembers it; a stretch read without that first
value tells the kinds apart by the tensor's shape.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganterm.errors import UserError
from ganterm.sources.columns import in_step_order
from ganterm.sources.logbatch import LogImage, Series, Times, merge_times
from ganterm.sources.tfevents_fast import common_scalars
from ganterm.sources.tfrecords import Scan

FAST_SCALARS = True  # the common scalar event decoded in bulk (tfevents_fast); False: all through the protobuf classes
NEEDS_EXTRA = "reading TensorBoard event files needs tensorboardX and crc32c; install them with: " \
    "pip install 'ganterm[tensorboard]'"  # fmt: skip
_NOT_DATA = {  # events that are no summary, under the name a user knows them by; file_version is left out
    "graph_def": "graph",
    "meta_graph_def": "graph",
    "tagged_run_metadata": "run metadata",
    "session_log": "session log",
    "log_message": "log message",
}
_VALUE_KINDS = {"histo": "histogram", "obsolete_old_style_histogram": "histogram", "audio": "audio"}
# TensorFlow's DataType numbers: the numeric ones a scalar comes as, and the field its values are listed in
_NUMBERS = {
    1: (np.float32, "float_val"),
    2: (np.float64, "double_val"),
    3: (np.int32, "int_val"),
    4: (np.uint8, "int_val"),
    5: (np.int16, "int_val"),
    6: (np.int8, "int_val"),
    9: (np.int64, "int64_val"),
    19: (np.float16, "half_val"),
}
_STRING = 7
_SESSION_START = 1  # SessionLog.START
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")


def import_tensorboardx() -> None:
    """Import tensorboardX without torch (ImportError when it is not installed).

    tensorboardX imports torch, where it is installed, only to accept torch
    tensors, which ganterm never hands it; torch would cost each reader or
    export 1.5 s and about 500 MB. Blocked while tensorboardX loads, torch stays
    importable afterwards; a process that already holds torch keeps it.
    """
    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError: "no torch"
    try:
        importlib.import_module("tensorboardX")
    finally:
        if blocked:
            del sys.modules["torch"]


def require_extra() -> None:
    """Before anything is read: the tensorboard extra is installed, or one sentence says how to get it.

    Only looked up, not imported: a run of scalars alone is read without tensorboardX (tfevents_fast), and
    importing it costs the first poll a third of a second.
    """
    if any(importlib.util.find_spec(name) is None for name in ("tensorboardX", "crc32c")):
        raise UserError(NEEDS_EXTRA)


def event_class() -> Any:
    """tensorboardX's Event message class (`require_extra` has made sure it is there)."""
    import_tensorboardx()
    from tensorboardX.proto.event_pb2 import Event

    return Event


@dataclass
class Decoded:
    """What a run of records held, gathered per tag."""

    points: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # tag -> steps, values
    arrays: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # and decoded in bulk
    wall_times: tuple[list[int], list[float]] = field(default_factory=lambda: ([], []))  # step, wall time of an
    # event that held a scalar
    wall_time_arrays: list[Times] = field(default_factory=list)  # and decoded in bulk
    images: list[LogImage] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    bad: int = 0  # records whose checksums held but whose bytes are no Event
    restarts: list[int] = field(default_factory=list)  # the steps of SessionLog START events, as a writer resumed
    # with purge_step writes one: TensorBoard drops what was logged before it at that step or later

    def series(self) -> Series:
        """The points as arrays, each tag in step order (a restarted writer goes back in steps)."""
        series = {}
        for tag in dict.fromkeys([*self.arrays, *self.points]):
            parts = list(self.arrays.get(tag, []))
            if tag in self.points:
                steps, values = self.points[tag]
                parts.append((np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64)))
            if len(parts) == 1:
                series[tag] = in_step_order(*parts[0])
            else:
                series[tag] = in_step_order(
                    np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                )
        return series

    def times(self) -> Times:
        """The wall time of each step that held a scalar, its earliest event's."""
        steps, seconds = self.wall_times
        return merge_times([*self.wall_time_arrays, (np.array(steps, np.int64), np.array(seconds, np.float64))])


class EventDecoder:
    """Decodes records into a `Decoded`, remembering each tensor tag's plugin from its first value."""

    def __init__(self) -> None:
        self._parse: Any = None  # Event.FromString, imported when a record first needs it
        self._plugins: dict[str, str] = {}

    def decode(self, found: Scan, into: Decoded) -> None:
        """The records of a scan: those of the common scalar shape in bulk, the others one by one."""
        starts, ends = np.array(found.starts, dtype=np.int64), np.array(found.ends, dtype=np.int64)
        if FAST_SCALARS:
            points, done, times = common_scalars(found.buf, starts, ends)
            into.wall_time_arrays.append(times)
        else:
            points, done = {}, np.zeros(len(starts), bool)
        for tag, parts in points.items():
            into.arrays.setdefault(tag, []).extend(parts)
        rest = np.flatnonzero(~done).tolist()
        self.decode_records([found.buf[found.starts[i] : found.ends[i]] for i in rest], into)

    def decode_records(self, records: list[memoryview], into: Decoded) -> None:
        """Each record through the protobuf classes."""
        if not records:
            return
        if self._parse is None:
            self._parse = event_class().FromString
        from google.protobuf.message import DecodeError

        points, images, skipped = into.points, into.images, into.skipped
        for data in records:
            try:
                event = self._parse(data)
            except DecodeError:
                into.bad += 1
                continue
            what = event.WhichOneof("what")
            if what != "summary":
                if what in _NOT_DATA:
                    skipped[_NOT_DATA[what]] += 1
                if what == "session_log" and event.session_log.status == _SESSION_START:
                    into.restarts.append(event.step)
                continue
            step = event.step
            held_scalar = False
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    number: float | None = value.simple_value
                elif kind == "tensor":
                    number = self._tensor(value, step, into)
                elif kind == "image":
                    images.append(LogImage(value.tag, step, value.image.encoded_image_string))
                    continue
                else:
                    skipped[_VALUE_KINDS.get(kind, kind or "empty value")] += 1
                    continue
                if number is not None:
                    series = points.get(value.tag)
                    if series is None:
                        series = points[value.tag] = ([], [])
                    series[0].append(step)
                    series[1].append(number)
                    held_scalar = True
            if held_scalar:
                into.wall_times[0].append(step)
                into.wall_times[1].append(event.wall_time)

    def _tensor(self, value: Any, step: int, into: Decoded) -> float | None:
        """A tensor's one number if it is a scalar; its images are added, anything else is counted."""
        tag, tensor = value.tag, value.tensor
        plugin = value.metadata.plugin_data.plugin_name
        if plugin:
            self._plugins[tag] = plugin
        else:
            plugin = self._plugins.get(tag, "")
        if plugin in ("", "scalars"):
            number = tensor_scalar(tensor)
            if number is not None:
                return number
        if plugin in ("", "images"):
            pictures = tensor_images(tensor, checked=plugin == "")
            if pictures:
                into.images += [LogImage(tag, step, picture) for picture in pictures]
                return None
        into.skipped[plugin or _shape_kind(tensor)] += 1
        return None


def tensor_scalar(tensor: Any) -> float | None:
    """The number of a one-element numeric tensor, from its raw bytes or its typed list; None for any other."""
    if tensor.dtype not in _NUMBERS or any(dim.size != 1 for dim in tensor.tensor_shape.dim):
        return None
    dtype, listed = _NUMBERS[tensor.dtype]
    if tensor.tensor_content:
        little_endian = np.dtype(dtype).newbyteorder("<")
        if len(tensor.tensor_content) != little_endian.itemsize:  # several numbers, or bytes that are none
            return None
        return float(np.frombuffer(tensor.tensor_content, dtype=little_endian)[0])
    numbers = getattr(tensor, listed)
    if len(numbers) != 1:
        return None
    if dtype is np.float16:  # listed as the 16 bits in an int
        bits = numbers[0]
        return float(np.array(bits, dtype=np.uint16).view(np.float16)) if 0 <= bits <= 0xFFFF else None
    return float(numbers[0])


def tensor_images(tensor: Any, checked: bool) -> list[bytes]:
    """The encoded images of TensorFlow 2's image tensor: [width, height, image, ...] as strings.

    `checked`: without the plugin's name, only when each holds an image format's signature.
    """
    if tensor.dtype != _STRING or len(tensor.string_val) < 3:
        return []
    pictures = list(tensor.string_val[2:])
    if checked and not all(picture.startswith(_IMAGE_MAGIC) for picture in pictures):
        return []
    return pictures


def _shape_kind(tensor: Any) -> str:
    """The kind of a tensor whose plugin is unknown: histograms are [buckets, 3] numbers, text is strings."""
    dims = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.dtype == _STRING:
        return "text"
    if len(dims) == 2 and dims[1] == 3:
        return "histogram"
    return "tensor"
