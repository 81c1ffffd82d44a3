"""Reading TensorBoard event files: what torch's and tensorboardX's writers write, followed as it grows.

The files are written by the writers themselves (torch's SummaryWriter,
tensorboardX's SummaryWriter and its synchronous EventsWriter); torn, corrupt,
cut back and replaced files are made from their bytes.
"""

from __future__ import annotations

import io
import math
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganterm.errors import UserError
from ganterm.sources import history as history_module
from ganterm.sources import tfevents as tfevents_module
from ganterm.sources import tfevents_decode, tfevents_fast
from ganterm.sources.logbatch import LogBatch
from ganterm.sources.tfevents import TfeventsReader, find_event_runs
from ganterm.sources.tfrecords import masked_crc, read_span, scan

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.event_file_writer import EventsWriter  # noqa: E402
from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata  # noqa: E402
from tensorboardX.proto.tensor_pb2 import TensorProto  # noqa: E402


class Shown:
    """What a viewer holds after applying each batch as the seam says: new points after, history in front."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.times: list[tuple[int, float]] = []  # (step, wall time) as they came: history in front
        self.images: list[tuple[str, int, bytes]] = []
        self.skipped: dict[str, int] = {}
        self.bad_records = 0
        self.resets = 0

    def apply(self, batch: LogBatch) -> LogBatch:
        if batch.reset:
            self.__init__()  # type: ignore[misc]
            self.resets = 1
        for tag, (steps, values) in batch.history.items():
            self.points[tag] = list(zip(steps.tolist(), values.tolist(), strict=True)) + self.points.get(tag, [])
        for tag, (steps, values) in batch.scalars.items():
            self.points.setdefault(tag, []).extend(zip(steps.tolist(), values.tolist(), strict=True))
        self.times[:0] = zip(*(part.tolist() for part in batch.history_times), strict=True)
        self.times += zip(*(part.tolist() for part in batch.times), strict=True)
        self.images += [(image.tag, image.step, image.image) for image in batch.images]  # type: ignore[misc]
        for kind, count in batch.skipped.items():
            self.skipped[kind] = self.skipped.get(kind, 0) + count
        self.bad_records += batch.bad_records
        return batch

    def steps(self, tag: str) -> list[int]:
        return [step for step, _ in self.points[tag]]


def read_all(reader: TfeventsReader, shown: Shown | None = None) -> Shown:
    """Polls until `more` is false, as the viewer does."""
    shown = shown or Shown()
    deadline = time.monotonic() + 60
    while shown.apply(reader.poll()).more:
        assert time.monotonic() < deadline, "the history never finished loading"
        time.sleep(0.01)
    return shown


def png(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(out, format="PNG")
    return out.getvalue()


def write_scalars(folder: Path, steps: range, tags: tuple[str, ...] = ("loss/D", "loss/G")) -> Path:
    """One event per tag per step, as add_scalar writes them, through tensorboardX's synchronous writer."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = EventsWriter(str(folder / "events"))
    for step in steps:
        for index, name in enumerate(tags):
            writer.write_event(scalar_event(name, step, step / 8 + index))
    writer.close()
    return Path(writer._file_name)


def scalar_event(name: str, step: int, value: float) -> Event:
    summary = Summary(value=[Summary.Value(tag=name, simple_value=value)])
    return Event(step=step, wall_time=1.7e9 + step, summary=summary)


def record_ends(data: bytes) -> list[int]:
    """Where each record of an event file ends, by the lengths in its headers."""
    ends, pos = [], 0
    while pos < len(data):
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
        ends.append(pos)
    return ends


def test_what_torchs_summary_writer_writes_is_read(tmp_path: Path):
    """Scalars old and new style, an image; histograms and text are counted, not shown."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(20):
        writer.add_scalar("Loss/D", 0.5 + step / 100, step)
        writer.add_scalar("D(x)", 0.25 * step, step, new_style=True)
    writer.add_histogram("weights", np.arange(10.0), 3)
    writer.add_text("notes", "a note", 4)
    writer.add_image("samples", np.zeros((3, 4, 4), dtype=np.uint8), 7)
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.steps("Loss/D") == list(range(20))
    assert shown.points["Loss/D"][5][1] == pytest.approx(0.55)
    assert shown.points["D(x)"] == [(step, pytest.approx(0.25 * step)) for step in range(20)]
    assert shown.skipped == {"histogram": 1, "text": 1}
    [(tag, step, image)] = shown.images
    assert (tag, step) == ("samples", 7) and Image.open(io.BytesIO(image)).size == (4, 4)
    assert shown.bad_records == 0


def test_what_tensorboardxs_summary_writer_writes_is_read(tmp_path: Path):
    writer = tensorboardX.SummaryWriter(str(tmp_path))
    for step in range(30):
        writer.add_scalar("Loss_D", step * 0.5, step)
        writer.add_scalar("errG", -step, step)
    writer.add_histogram("grads", np.arange(5.0), 2)
    writer.add_histogram("grads", np.arange(5.0), 3)
    writer.add_text("config", "lr=2e-4", 0)
    writer.add_image("fake", np.ones((3, 8, 8)), 29)
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.points["Loss_D"] == [(step, step * 0.5) for step in range(30)]
    assert shown.points["errG"] == [(step, -step) for step in range(30)]
    assert shown.skipped == {"histogram": 2, "text": 1}
    assert [(tag, step) for tag, step, _ in shown.images] == [("fake", 29)]


def test_tensor_scalars_and_image_tensors_of_tensorflow_2_are_read(tmp_path: Path):
    """float, double and int tensors, listed or as raw bytes; the plugin's name only in each tag's first value."""
    scalars = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    images = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="images"))
    writer = EventsWriter(str(tmp_path / "events"))
    for step in range(3):
        tensors = {
            "float": TensorProto(dtype=1, float_val=[step + 0.5]),
            "double": TensorProto(dtype=2, tensor_content=struct.pack("<d", step + 0.25)),
            "int": TensorProto(dtype=9, int64_val=[step * 10]),
        }
        for name, tensor in tensors.items():
            value = Summary.Value(tag=name, tensor=tensor, metadata=scalars if step == 0 else None)
            writer.write_event(Event(step=step, summary=Summary(value=[value])))
    picture = TensorProto(dtype=7, string_val=[b"4", b"4", png()])
    value = Summary.Value(tag="gen", tensor=picture, metadata=images)
    writer.write_event(Event(step=5, summary=Summary(value=[value])))
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.points == {
        "float": [(0, 0.5), (1, 1.5), (2, 2.5)],
        "double": [(0, 0.25), (1, 1.25), (2, 2.25)],
        "int": [(0, 0.0), (1, 10.0), (2, 20.0)],
    }
    assert shown.images == [("gen", 5, png())]


def test_points_appended_between_polls_arrive_exactly_once(tmp_path: Path):
    writer = EventsWriter(str(tmp_path / "events"))
    reader = TfeventsReader(tmp_path)
    shown = Shown()
    for start in (0, 10, 20):
        for step in range(start, start + 10):
            writer.write_event(scalar_event("loss", step, step))
        writer.flush()
        shown.apply(reader.poll())
        assert shown.steps("loss") == list(range(start + 10))
    assert not reader.poll()
    writer.close()


def test_a_half_written_last_record_is_waited_for_then_read_whole_once(tmp_path: Path):
    whole = write_scalars(tmp_path / "whole", range(10), tags=("loss",)).read_bytes()
    ends = record_ends(whole)
    torn_at = ends[-2] + 7  # inside the last record's header
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "events.out.tfevents.1.host"
    path.write_bytes(whole[:torn_at])
    reader = TfeventsReader(folder)
    shown = Shown()
    shown.apply(reader.poll())
    assert shown.steps("loss") == list(range(9)) and shown.bad_records == 0
    with open(path, "ab") as handle:
        handle.write(whole[torn_at : ends[-1] - 3])  # all but the last bytes of its checksum
    assert not shown.apply(reader.poll())
    with open(path, "ab") as handle:
        handle.write(whole[ends[-1] - 3 :])
    shown.apply(reader.poll())
    assert shown.steps("loss") == list(range(10)) and shown.bad_records == 0


def test_a_corrupt_record_in_the_middle_is_skipped_counted_and_the_rest_read(tmp_path: Path):
    data = bytearray(write_scalars(tmp_path / "whole", range(40), tags=("loss",)).read_bytes())
    ends = record_ends(bytes(data))
    data[ends[10] + 20] ^= 0xFF  # inside the 12th record's data: the event of step 10 (the 1st is file_version)
    data[ends[20] + 9] ^= 0xFF  # the checksum of the length of step 20's record: its data still checks out
    folder = tmp_path / "run"
    folder.mkdir()
    garbage = b"\x00\x13garbage\xff" * 5  # and junk between the records of steps 30 and 31
    (folder / "events.out.tfevents.1.host").write_bytes(bytes(data[: ends[31]]) + garbage + bytes(data[ends[31] :]))
    shown = read_all(TfeventsReader(folder))
    assert shown.steps("loss") == [step for step in range(40) if step not in (10, 20)]
    assert shown.bad_records == 3


def test_a_file_cut_back_or_replaced_is_read_again_from_the_start(tmp_path: Path):
    path = write_scalars(tmp_path, range(20), tags=("loss",))
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    data = path.read_bytes()
    path.write_bytes(data[: record_ends(data)[5]])  # cut back to steps 0 to 4
    batch = shown.apply(reader.poll())
    assert batch.reset and shown.steps("loss") == list(range(5))
    replacement = tmp_path / "new"
    replacement.write_bytes(data)
    replacement.replace(path)  # another file under the same name, longer than before
    batch = shown.apply(reader.poll())
    assert batch.reset and shown.steps("loss") == list(range(20))
    assert not reader.poll().reset


def test_hundreds_of_tags_and_names_nobody_knows_come_as_they_are(tmp_path: Path):
    tags = tuple(f"my metric {index}/ü" for index in range(300))
    write_scalars(tmp_path, range(3), tags=tags)
    shown = read_all(TfeventsReader(tmp_path))
    assert set(shown.points) == set(tags)
    assert shown.points["my metric 299/ü"] == [(0, 299.0), (1, 299.125), (2, 299.25)]


def test_a_new_event_file_in_a_watched_folder_is_followed(tmp_path: Path):
    write_scalars(tmp_path, range(5), tags=("loss",))
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    writer = EventsWriter(str(tmp_path / "events"), filename_suffix=".second")  # a restarted run's new file
    for step in range(5, 8):
        writer.write_event(scalar_event("loss", step, step))
    writer.close()
    shown.apply(reader.poll())
    assert shown.steps("loss") == list(range(8))


def test_nested_run_folders_are_found_as_tensorboard_logdir_finds_them(tmp_path: Path):
    for run in ("a", "b/seed1", "b/seed2", "c/deeper/still"):
        write_scalars(tmp_path / run, range(1))
    (tmp_path / "empty/sub").mkdir(parents=True)
    (tmp_path / "b/notes.txt").write_text("no events here")
    found = [path.relative_to(tmp_path).as_posix() for path in find_event_runs(tmp_path)]
    assert found == ["a", "b/seed1", "b/seed2", "c/deeper/still"]
    assert find_event_runs(tmp_path / "a") == [tmp_path / "a"]
    assert find_event_runs(tmp_path / "empty") == []


def test_a_long_run_shows_its_newest_steps_first_then_its_whole_history(tmp_path: Path, monkeypatch):
    """Over the threshold, the first poll holds only the newest steps; the helpers deliver the rest, each once."""
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 5_000)
    write_scalars(tmp_path, range(200), tags=("loss", "errD"))
    reader = TfeventsReader(tmp_path)
    shown = Shown()
    first = shown.apply(reader.poll())
    assert first.more and 0 < len(shown.steps("loss")) < 50 and shown.steps("loss")[-1] == 199
    read_all(reader, shown)
    assert shown.steps("loss") == list(range(200)) and shown.steps("errD") == list(range(200))
    assert shown.points["errD"][150] == (150, 150 / 8 + 1)
    assert shown.bad_records == 0
    reader.close()


def test_a_long_runs_wall_times_arrive_with_its_points_newest_first_then_the_history_each_step_once(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 5_000)
    write_scalars(tmp_path, range(200), tags=("loss",))
    reader = TfeventsReader(tmp_path)
    shown = Shown()
    shown.apply(reader.poll())
    assert shown.times == [(step, 1.7e9 + step) for step in shown.steps("loss")] and len(shown.times) < 100
    read_all(reader, shown)
    reader.close()
    assert shown.times == [(step, 1.7e9 + step) for step in range(200)]


def test_a_steps_wall_time_is_its_earliest_scalar_events_and_an_image_gives_none(tmp_path: Path):
    """A quality number logged at a step minutes after its losses does not move the step on the time axis."""
    writer = EventsWriter(str(tmp_path / "events"))
    writer.write_event(
        Event(step=1, wall_time=100.0, summary=Summary(value=[Summary.Value(tag="loss", simple_value=1)]))
    )
    writer.write_event(
        Event(step=1, wall_time=400.0, summary=Summary(value=[Summary.Value(tag="fid", simple_value=9)]))
    )
    image = Summary.Image(height=4, width=4, colorspace=3, encoded_image_string=png())
    writer.write_event(Event(step=2, wall_time=500.0, summary=Summary(value=[Summary.Value(tag="x", image=image)])))
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.times == [(1, 100.0)] and len(shown.images) == 1


def test_a_long_run_over_several_files_with_a_corrupt_record_in_its_history(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 4_000)
    older = write_scalars(tmp_path / "a", range(100), tags=("loss",))
    data = bytearray(older.read_bytes())
    data[record_ends(bytes(data))[50] + 20] ^= 0xFF  # the event of step 50
    (tmp_path / "events.out.tfevents.1.host").write_bytes(bytes(data))
    newer = write_scalars(tmp_path / "b", range(100, 200), tags=("loss",))
    newer.rename(tmp_path / "events.out.tfevents.2.host")
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.steps("loss") == [step for step in range(200) if step != 50]
    assert shown.bad_records == 1


@pytest.mark.parametrize("missing", ["tensorboardX", "crc32c"])
def test_without_the_extra_one_sentence_says_what_to_install(monkeypatch, tmp_path: Path, missing: str):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(UserError, match=r"pip install 'ganterm\[tensorboard\]'"):
        TfeventsReader(tmp_path)


def test_the_bulk_decoding_of_the_common_scalar_event_gives_what_the_protobuf_classes_give(tmp_path: Path, monkeypatch):
    """Step 0 (not written at all), big steps, two values in one event, long and non-ASCII tags: the same points."""
    writer = EventsWriter(str(tmp_path / "events"))
    long_tag = "x" * 118  # the longest tag whose summary length is still one byte
    for step in [0, 1, 127, 128, 2**31 + 5, 2**40]:
        for name in ("loss/D", "D(G(z)) ünïcode", long_tag, long_tag + "y", ""):
            writer.write_event(scalar_event(name, step, step % 1000 - 0.5))
        values = [Summary.Value(tag="pair/a", simple_value=1.0), Summary.Value(tag="pair/b", simple_value=2.0)]
        writer.write_event(Event(step=step, wall_time=1.7e9, summary=Summary(value=values)))
        writer.write_event(Event(step=step, summary=Summary(value=[Summary.Value(tag="no time", simple_value=3)])))
    writer.close()
    bulk = read_all(TfeventsReader(tmp_path))
    monkeypatch.setattr(tfevents_decode, "FAST_SCALARS", False)
    one_by_one = read_all(TfeventsReader(tmp_path))
    assert bulk.points == one_by_one.points and bulk.times == one_by_one.times
    assert bulk.times == [(step, 1.7e9) for step in [0, 1, 127, 128, 2**31 + 5, 2**40]]  # the pair's, the earliest
    assert len(bulk.points) == 8 and bulk.steps(long_tag + "y")[-1] == 2**40


def test_tags_of_one_length_are_told_apart_even_when_their_hashes_collide(tmp_path: Path, monkeypatch):
    """The bulk decoder groups tags by a hash of their bytes; a collision must not merge two tags."""
    monkeypatch.setattr(tfevents_fast, "_HASH_WEIGHTS", np.zeros(128, dtype=np.uint64))  # every tag collides
    write_scalars(tmp_path, range(1, 4), tags=("loss/D", "loss/G", "errD_x"))
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.points == {
        "loss/D": [(1, 0.125), (2, 0.25), (3, 0.375)],
        "loss/G": [(1, 1.125), (2, 1.25), (3, 1.375)],
        "errD_x": [(1, 2.125), (2, 2.25), (3, 2.375)],
    }


def test_a_record_belongs_to_the_piece_it_starts_in_and_is_read_whole_there(tmp_path: Path):
    """The history is cut into pieces at any byte; each piece reads on past its end to finish its last record."""
    path = write_scalars(tmp_path, range(1, 30), tags=("loss",))
    data = bytearray(path.read_bytes())
    ends = record_ends(bytes(data))
    cut = ends[10] + 5  # inside the record of step 11
    first, second = read_span(path, 0, cut), read_span(path, cut, len(data))
    assert len(first.starts) == 12 and len(second.starts) == len(ends) - 12
    data[ends[10] + 20] ^= 0xFF  # that record, corrupt: counted by the piece it starts in, once
    path.write_bytes(bytes(data))
    first, second = read_span(path, 0, cut), read_span(path, cut, len(data))
    assert (len(first.starts), first.bad) == (11, 1)
    assert (len(second.starts), second.bad) == (len(ends) - 12, 0)


def test_a_last_record_longer_than_the_newest_stretch_is_read_and_so_is_what_follows(tmp_path: Path, monkeypatch):
    """A big image at the end: no record starts in the newest bytes, so the boundary is looked for further back."""
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 5_000)
    noise = np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    picture = io.BytesIO()
    Image.fromarray(noise).save(picture, format="PNG")  # about 10 kB that do not compress
    writer = EventsWriter(str(tmp_path / "events"))
    for step in range(1, 100):
        writer.write_event(scalar_event("loss", step, step))
    image = Summary.Image(height=60, width=60, colorspace=3, encoded_image_string=picture.getvalue())
    writer.write_event(Event(step=99, wall_time=1.7e9, summary=Summary(value=[Summary.Value(tag="fake", image=image)])))
    writer.flush()
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    writer.write_event(scalar_event("loss", 100, 100))
    writer.close()
    read_all(reader, shown)
    assert shown.steps("loss") == list(range(1, 101))
    assert [(tag, step, data) for tag, step, data in shown.images] == [("fake", 99, picture.getvalue())]
    assert shown.bad_records == 0
    reader.close()


def test_events_that_hold_no_summary_are_counted_by_kind_but_each_files_version_is_not(tmp_path: Path):

    writer = EventsWriter(str(tmp_path / "events"))  # writes file_version first, as every writer does
    writer.write_event(Event(step=0, wall_time=1.7e9, graph_def=b"\x0a\x00"))
    writer.write_event(Event(step=0, wall_time=1.7e9, session_log=SessionLog(status=SessionLog.START)))
    writer.write_event(scalar_event("loss", 1, 0.5))
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.skipped == {"graph": 1, "session log": 1}
    assert shown.points == {"loss": [(1, 0.5)]}


def test_a_scalar_tensor_whose_raw_bytes_are_no_whole_number_is_skipped_and_counted(tmp_path: Path):
    """Three bytes of float32 content, eight for one float32, a half float's bits out of range: counted under the
    plugin, the others still read."""
    scalars = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    writer = EventsWriter(str(tmp_path / "events"))
    for content in (b"\x00\x01\x02", struct.pack("<2f", 1.0, 2.0)):
        value = Summary.Value(tag="odd", tensor=TensorProto(dtype=1, tensor_content=content), metadata=scalars)
        writer.write_event(Event(step=1, summary=Summary(value=[value])))
    for bits in (70000, -1):  # a half float's 16 bits, listed in an int32 that holds no such bits
        value = Summary.Value(tag="half", tensor=TensorProto(dtype=19, half_val=[bits]), metadata=scalars)
        writer.write_event(Event(step=1, summary=Summary(value=[value])))
    writer.write_event(scalar_event("loss/D", 2, 0.5))
    writer.close()
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.points == {"loss/D": [(2, 0.5)]}
    assert shown.skipped == {"scalars": 4} and shown.bad_records == 0


def test_a_piece_of_garbage_reads_its_own_bytes_and_not_the_rest_of_the_file(tmp_path: Path):
    """Its last bytes look like the start of a record; their length, unchecked, would have it read on to the end."""
    path = tmp_path / "events.out.tfevents.x"
    path.write_bytes(np.random.default_rng(0).bytes(3 << 20))
    for start in range(0, 64 << 10, 16 << 10):
        tracemalloc.start()
        found = read_span(path, start, start + (16 << 10))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert found.starts == [] and found.bad == 1
        assert peak < 8 << 20


def test_a_record_whose_checked_length_runs_past_the_end_of_the_file_is_waited_for_without_reading_on(tmp_path: Path):
    """A header that checks out, saying a gigabyte: the piece it starts in reads no more than the file holds."""
    path = write_scalars(tmp_path, range(1, 30), tags=("loss",))
    length = struct.pack("<Q", 1 << 30)
    path.write_bytes(path.read_bytes() + length + struct.pack("<I", masked_crc(length)) + b"the data, never written")
    tracemalloc.start()
    found = read_span(path, 0, path.stat().st_size - 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (len(found.starts), found.bad) == (30, 0)
    assert peak < 1 << 20


def test_a_file_of_garbage_named_as_an_event_file_is_passed_over_in_moments_and_counted(tmp_path: Path):
    """8 MB of random bytes: no record anywhere, the newest-first search looks back through all of it."""
    (tmp_path / "events.out.tfevents.x").write_bytes(np.random.default_rng(1).bytes(8 << 20))
    reader = TfeventsReader(tmp_path)
    began = time.monotonic()
    shown = Shown()
    shown.apply(reader.poll())
    assert time.monotonic() - began < 3  # a byte at a time it took 8 s
    read_all(reader, shown)
    reader.close()
    assert shown.points == {} and shown.images == []
    assert shown.bad_records >= 1


def events_file_bytes(folder: Path, events: list[Event]) -> bytes:
    """The bytes tensorboardX's writer writes for `events`, after its file_version event (its file then removed)."""
    writer = EventsWriter(str(folder / "written"))
    for event in events:
        writer.write_event(event)
    writer.close()
    written = Path(writer._file_name)
    data = written.read_bytes()
    written.unlink()
    return data


def torn_reads(folder: Path, data: bytes, cuts: list[int]) -> Shown:
    """The file written up to each cut in turn, the reader polled after each, then after the whole of it."""
    path = folder / "events.out.tfevents.1.host"
    path.write_bytes(b"")
    reader, shown = TfeventsReader(folder), Shown()
    written = 0
    for cut in [*sorted(cuts), len(data)]:
        with path.open("ab") as handle:
            handle.write(data[written:cut])
        written = max(written, cut)
        shown.apply(reader.poll())
    reader.close()
    return shown


TORN_TAGS = ("loss/D", "D(x)", "t" * 130)  # the last one too long for the bulk decoder: the protobuf classes read it


def test_a_record_torn_at_any_byte_between_two_polls_gives_each_point_once(tmp_path: Path):
    events = [scalar_event(tag, step, step + index / 4) for step in (1, 2, 300) for index, tag in enumerate(TORN_TAGS)]
    data = events_file_bytes(tmp_path, events)
    expected = {tag: [(step, step + index / 4) for step in (1, 2, 300)] for index, tag in enumerate(TORN_TAGS)}
    for cut in range(len(data) + 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        shown = torn_reads(folder, data, [cut])
        assert (shown.points, shown.bad_records) == (expected, 0), cut


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=12, unique=True).map(sorted),
    tags=st.lists(st.sampled_from((*TORN_TAGS, "", "é/ü", "Loss_D")), min_size=1, max_size=3, unique=True),
    cuts=st.lists(st.floats(0, 1), max_size=6),
)
def test_points_arrive_exactly_once_however_the_file_is_torn_between_polls(tmp_path: Path, steps, tags, cuts):
    """Any steps (0 is not written at all, the largest take nine bytes), any tags, the file cut anywhere."""
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    events = [scalar_event(tag, step, float(step % 1000)) for step in steps for tag in tags]
    data = events_file_bytes(folder, events)
    shown = torn_reads(folder, data, [int(cut * len(data)) for cut in cuts])
    assert shown.points == {tag: [(step, float(step % 1000)) for step in steps] for tag in tags}
    assert shown.bad_records == 0


def test_a_record_said_to_be_longer_than_the_file_is_waited_for_without_rereading_the_file_each_poll(tmp_path: Path):
    """A checked header saying 256 MB, then 20 MB: what follows it is not read again and again at every poll."""
    path = write_scalars(tmp_path, range(1, 30), tags=("loss",))
    length = struct.pack("<Q", 256 << 20)
    with path.open("ab") as handle:
        handle.write(length + struct.pack("<I", masked_crc(length)) + bytes(20 << 20))
    reader = TfeventsReader(tmp_path)
    shown = Shown()
    shown.apply(reader.poll())
    shown.apply(reader.poll())  # reads on to the long record's header
    tracemalloc.start()
    for _ in range(3):
        shown.apply(reader.poll())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reader.close()
    assert shown.steps("loss") == list(range(1, 30)) and shown.bad_records == 0
    assert peak < 1 << 20


def test_a_record_longer_than_a_polls_read_arrives_once_it_is_all_written(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tfevents_module, "READ_BYTES", 64 << 10)
    picture = np.random.default_rng(2).bytes(300 << 10)
    image = Summary.Image(height=1, width=1, colorspace=3, encoded_image_string=picture)
    big = Event(step=2, summary=Summary(value=[Summary.Value(tag="fake", image=image)]))
    data = events_file_bytes(tmp_path, [scalar_event("loss", 1, 1.0), big, scalar_event("loss", 3, 3.0)])
    shown = torn_reads(tmp_path, data, [100 << 10, 200 << 10, len(data) - 40])
    assert shown.points == {"loss": [(1, 1.0), (3, 3.0)]} and shown.bad_records == 0
    assert shown.images == [("fake", 2, picture)]


def test_an_event_file_that_cannot_be_opened_is_said_once_and_the_others_are_read(tmp_path: Path, monkeypatch):
    """Another user's file, mode 0600, in a shared folder (tests run as root too, so open itself refuses here)."""
    write_scalars(tmp_path / "a", range(1, 4))
    locked = write_scalars(tmp_path / "b", range(1, 4), tags=("hidden",))
    for path in (tmp_path / "a").iterdir():
        path.rename(tmp_path / path.name)
    locked = locked.rename(tmp_path / (locked.name + ".locked"))
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if Path(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    reader = TfeventsReader(tmp_path)
    first, second = reader.poll(), reader.poll()
    reader.close()
    assert sorted(first.scalars) == ["loss/D", "loss/G"]
    assert [line for line in first.log_lines if locked.name in line] == [
        f"{locked.name} cannot be read (permission denied): it is left out."
    ]
    assert second.log_lines == []


def test_a_history_piece_whose_file_is_gone_by_the_time_it_is_read_is_left_out_not_waited_for(tmp_path: Path):
    """The helper fails on it and so does the viewer's own try: the history still comes to an end."""
    kept = write_scalars(tmp_path, range(1, 30), tags=("loss",))
    history = history_module.SpanHistory(
        [(tmp_path / "gone", 0, 100), (kept, 0, kept.stat().st_size)], tfevents_module.parse_span
    )
    deadline = time.monotonic() + 10
    pieces = []
    while history.pending and time.monotonic() < deadline:
        pieces += history.ready()
        time.sleep(0.01)
    finished = not history.pending
    history.close()
    assert finished and [sorted(piece.scalars) for piece in pieces] == [["loss"]]


def test_a_long_run_whose_file_is_replaced_shows_the_new_files_newest_steps_first_again(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 3_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 5_000)
    path = write_scalars(tmp_path / "first", range(200), tags=("loss",))
    path.rename(tmp_path / path.name)
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    replacement = write_scalars(tmp_path / "second", range(300), tags=("loss",))
    replacement.replace(tmp_path / path.name)
    after = shown.apply(reader.poll())
    assert after.reset and after.more and 0 < len(shown.steps("loss")) < 100 and shown.steps("loss")[-1] == 299
    read_all(reader, shown)
    reader.close()
    assert shown.steps("loss") == list(range(300))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.text(max_size=140),
            st.floats(width=32),
            st.one_of(st.sampled_from([0.0, 1.7e9]), st.floats()),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_bulk_decoder_agrees_with_the_protobuf_classes_on_any_scalar_event(tmp_path: Path, events):
    """Any step (negative ones take ten bytes), any tag (empty, non-ASCII, past one length byte), NaN, no time."""
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    data = events_file_bytes(
        folder,
        [
            Event(step=step, wall_time=wall_time, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
            for step, tag, value, wall_time in events
        ],
    )
    found = scan(memoryview(data))
    decoded = {}
    for fast in (True, False):
        tfevents_decode.FAST_SCALARS = fast
        try:
            into = tfevents_decode.Decoded()
            tfevents_decode.EventDecoder().decode(found, into)
        finally:
            tfevents_decode.FAST_SCALARS = True
        decoded[fast] = {tag: (s.tolist(), v.view(np.uint64).tolist()) for tag, (s, v) in into.series().items()}
        steps, seconds = into.times()
        decoded[fast]["wall times"] = (steps.tolist(), seconds.view(np.uint64).tolist())
    assert decoded[True] == decoded[False]
    wall_times = {step for step, _, _, wall_time in events if math.isfinite(wall_time) and wall_time != 0}
    assert set(decoded[True]["wall times"][0]) == set(wall_times)
    assert sum(len(steps) for tag, (steps, _) in decoded[True].items() if tag != "wall times") == len(events)


def test_a_file_whose_end_holds_no_record_is_read_from_its_start_not_searched_back_through(tmp_path: Path, monkeypatch):
    """Zeros at the end (a crash left a sparse tail): no boundary within the search's reach, so no newest-first."""
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 1_000)
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_SEARCH", 4_000)
    path = write_scalars(tmp_path, range(1, 2000), tags=("loss",))
    with path.open("ab") as handle:
        handle.write(bytes(5_000))
    reader = TfeventsReader(tmp_path)
    first = reader.poll()
    reader.close()
    assert first.scalars["loss"][0].tolist() == list(range(1, 2000)) and not first.more
    assert first.bad_records == 1


def test_an_event_file_deleted_while_the_run_is_opened_is_nothing_to_read(tmp_path: Path, monkeypatch):
    """Gone between the folder's listing and the search for its newest steps (a cleanup, a rotated log)."""
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 1_000)
    path = write_scalars(tmp_path, range(1, 200), tags=("loss",))
    measured = tfevents_module._size

    def size_then_delete(file: Path) -> int:
        size = measured(file)
        file.unlink()
        return size

    monkeypatch.setattr(tfevents_module, "_size", size_then_delete)
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    reader.close()
    assert not path.exists() and shown.points == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 40),
    corrupt=st.sets(st.integers(0, 39), max_size=8),
    cuts=st.lists(st.floats(0, 1), max_size=5),
)
def test_corrupt_records_torn_between_polls_are_counted_once_a_stretch_and_the_rest_read_once(
    tmp_path: Path, count, corrupt, cuts
):
    """A byte flipped in the data of some records; the file cut anywhere between polls, corrupt stretches too."""
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    data = bytearray(events_file_bytes(folder, [scalar_event("loss", step, step) for step in range(1, count + 1)]))
    ends = record_ends(bytes(data))  # the first record is the file's version
    corrupt = {index for index in corrupt if index < count}
    for index in corrupt:
        data[ends[index] + 14] ^= 0xFF  # inside record index + 1's event
    stretches = sum(1 for index in corrupt if index - 1 not in corrupt)
    shown = torn_reads(folder, bytes(data), [int(cut * len(data)) for cut in cuts])
    assert shown.points.get("loss", []) == [(step, step) for step in range(1, count + 1) if step - 1 not in corrupt]
    assert shown.bad_records == stretches


def write_resumed_run(folder: Path, writer_name: str, restart: int, steps: range, value: float) -> None:
    """A writer made with purge_step, as torch's and tensorboardX's write one: its file opens with a START."""
    writer = EventsWriter(str(folder / writer_name))
    writer.write_event(Event(step=restart, wall_time=1.7e9, session_log=SessionLog(status=SessionLog.START)))
    for step in steps:
        event = scalar_event("loss", step, value)
        event.wall_time += RESUMED_LATER
        writer.write_event(event)
    writer.close()


RESUMED_LATER = 1000.0  # seconds after the first writer's events of the same step


def resumed_at_50() -> list[tuple[int, float]]:
    """What TensorBoard shows of a run logged to step 99, then resumed from step 50 with purge_step=50."""
    return [(step, 0.0) for step in range(50)] + [(step, 2.0) for step in range(50, 80)]


def resumed_at_50_times() -> list[tuple[int, float]]:
    """... and the wall times of its steps: from 50 on, the resumed writer's, not those of what was dropped."""
    return [(step, 1.7e9 + step) for step in range(50)] + [
        (step, 1.7e9 + RESUMED_LATER + step) for step in range(50, 80)
    ]


def write_first_run(folder: Path) -> None:
    writer = EventsWriter(str(folder / "a"))
    for step in range(100):
        writer.write_event(scalar_event("loss", step, 0.0))
    writer.close()


def test_a_run_resumed_with_purge_step_drops_what_was_logged_from_that_step_on_as_tensorboard_does(tmp_path: Path):
    write_first_run(tmp_path)
    write_resumed_run(tmp_path, "b", 50, range(50, 80), 2.0)
    shown = read_all(TfeventsReader(tmp_path))
    assert shown.points["loss"] == resumed_at_50() and shown.times == resumed_at_50_times()


def test_a_run_resumed_while_watched_is_read_again_without_what_the_restart_drops(tmp_path: Path):
    write_first_run(tmp_path)
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    write_resumed_run(tmp_path, "b", 50, range(50, 80), 2.0)
    shown.apply(reader.poll())
    read_all(reader, shown)
    reader.close()
    assert shown.points["loss"] == resumed_at_50() and shown.resets == 1


def test_a_long_run_resumed_drops_the_same_points_from_its_history(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tfevents_module, "NEWEST_FIRST_BYTES", 1_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 1_500)
    write_first_run(tmp_path)
    write_resumed_run(tmp_path, "b", 50, range(50, 80), 2.0)
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    reader.close()
    assert shown.points["loss"] == resumed_at_50()
    assert {step: min(time for at, time in shown.times if at == step) for step, _ in shown.times} == dict(
        resumed_at_50_times()
    )  # a step straddling two stretches comes with each


def test_a_resumed_writers_start_that_comes_after_its_file_appeared_makes_the_run_read_again(tmp_path: Path):
    """torch's writer creates its file at once and flushes its first events up to two minutes later."""
    write_first_run(tmp_path)
    (tmp_path / "later").mkdir()
    write_resumed_run(tmp_path / "later", "b", 50, range(50, 80), 2.0)
    (written,) = (tmp_path / "later").iterdir()
    data = written.read_bytes()
    reader = TfeventsReader(tmp_path)
    shown = read_all(reader)
    (tmp_path / written.name).write_bytes(data[: record_ends(data)[0]])  # the file's version only
    read_all(reader, shown)
    with (tmp_path / written.name).open("ab") as handle:
        handle.write(data[record_ends(data)[0] :])
    read_all(reader, shown)
    reader.close()
    assert shown.points["loss"] == resumed_at_50() and shown.resets == 1
