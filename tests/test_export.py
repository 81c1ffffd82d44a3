"""`ganterm export --format csv|parquet|tensorboard`: every metrics row out, read back by other tools' own readers.

Each format is read with a reader ganterm does not use to write it (pandas and
pyarrow for the tables, TensorBoard's EventAccumulator for event files) and
compared value by value with the rows written to metrics.jsonl. Under CI a
missing reader fails the test instead of skipping it.
"""

from __future__ import annotations

import importlib
import io
import locale
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganterm.cli import app
from ganterm.errors import UserError
from ganterm.export import table as table_module
from ganterm.run.layout import RunDir
from ganterm.run.schema import tag
from ganterm.run.status import write_status
from ganterm.sources import ganterm_run
from ganterm.sources.ganterm_run import PinnedRows
from tests.foreign_runs import dcgan_records, fake_formats, write_log

runner = CliRunner()
START = 1_764_000_000.0
__all__ = ["fake_formats"]  # a fixture, used by name


def reader(name: str) -> ModuleType:
    """An independent reader the test needs; CI installs them all (`pip install -e '.[test]'`), so there it must be."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI", "").strip().lower() == "true":  # as tests/test_terminal.py reads it
            pytest.fail(f"{name} is not installed, and CI=true: the [test] extra must bring it", False)
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")


def _rows(steps: int, offset: float = 0.0) -> list[dict[str, Any]]:
    """Rows as ganterm's loop and a user's loop write them: sparse, with quality rows of their own, null, ints."""
    rows: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        row = {"step": step, "t": START + step * 0.25 + offset, "epoch": round(step / 7, 4)}
        row |= {"loss_d": 0.6931 + step / 1000 + offset, "loss_g": None if step == 3 else 1.25 - step / 997}
        row |= {"d_x": 0.5123, "d_g_z1": 0.4877, "d_g_z2": 0.4, "grad_norm_d": 12.5, "lr_d": 2e-4}
        if step % 4 == 0:
            row["my_metric"] = step * 3  # a user's own name, logged now and then, an int
        rows.append(row)
        if step % 5 == 0:  # a quality measurement: a row of its own at the same step
            rows.append({"step": step, "t": START + step * 0.25 + 0.1, "precision": 0.25 + step / 100, "recall": 0.125})
    return rows


BAD_LINES = [b'{"step": "7", "t": 1.0, "loss_d": 0.5}', b"not json at all", b'{"step": 8, "loss_d": 0.5}']


def make_run(root: Path, name: str, rows: list[dict[str, Any]], alerts: int = 0, grids: tuple[int, ...] = ()) -> RunDir:
    """A run directory as the recorder leaves it, written by hand: metrics with some malformed lines, events, grids."""
    run = RunDir(root / name)
    run.samples.mkdir(parents=True)
    lines = [orjson.dumps(row) for row in rows]
    lines[2:2] = BAD_LINES
    run.metrics.write_bytes(b"\n".join(lines) + b"\n")
    events = []
    for step in grids:
        Image.new("L", (32, 32), step % 256).save(run.sample_path(step))
        events.append({"t": START + step + 0.5, "step": step, "kind": "sample", "path": f"samples/step_{step:07d}.png"})
    for i in range(alerts):
        events.append({"t": START + 10 + i, "step": 4 + i, "kind": "alert", "check": "mode_collapse",
                       "severity": "warning", "message": f"G collapses ({i})", "evidence": {}})  # fmt: skip
    run.events.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    return run


def _export(*args: str):
    result = runner.invoke(app, ["export", *args])
    assert "Traceback" not in result.output
    return result


def _same(got: Any, want: Any) -> bool:
    """`want` is metrics.jsonl's value: None (NaN or infinity in the run) reads back as NaN."""
    if want is None:
        return isinstance(got, float) and math.isnan(got)
    return got == want


# ----- CSV and Parquet -------------------------------------------------------------------------------------------


def test_csv_holds_every_row_and_value_of_metrics_jsonl(tmp_path: Path):
    pd = reader("pandas")
    rows = _rows(23)
    run = make_run(tmp_path / "runs", "faces", rows)
    out = tmp_path / "faces.csv"
    result = _export("faces", "--root", str(tmp_path / "runs"), "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} ({len(rows)} rows of 1 run" in result.output
    assert "left out 3 malformed line(s) of metrics.jsonl" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["run", "step", "t", "epoch"]  # then ganterm's names, then the user's
    assert list(table.columns).index("my_metric") == len(table.columns) - 1
    assert len(table) == len(rows) and (table["run"] == run.name).all()
    for index, row in enumerate(rows):
        for column in table.columns[1:]:
            got = table.at[index, column]
            if column in row:
                assert _same(float(got), row[column]), (index, column, got, row[column])
            else:
                assert math.isnan(got), (index, column, got)
    raw = pd.read_csv(out, dtype=str, keep_default_na=False)  # null is written nan; a name a row lacks, nothing
    assert raw.at[2, "step"] == "3" and raw.at[2, "loss_g"] == "nan" and raw.at[2, "precision"] == ""


def test_csv_writes_true_and_false_as_1_and_0_in_lines_ended_the_unix_way(tmp_path: Path):
    make_run(tmp_path / "runs", "flags", [{"step": 1, "t": 5.0, "done": False}, {"step": 2, "t": 6.0, "done": True}])
    out = tmp_path / "flags.csv"
    assert _export("flags", "--root", str(tmp_path / "runs"), "--format", "csv", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == b"run,step,t,done\nflags,1,5.0,0\nflags,2,6.0,1\n"


def test_parquet_holds_every_row_and_value_in_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pq = reader("pyarrow.parquet")
    monkeypatch.setattr(ganterm_run, "PINNED_CHUNK_BYTES", 300)  # many chunks and row groups from a small file
    monkeypatch.setattr(table_module, "ROW_GROUP_ROWS", 7)
    rows = _rows(40)
    make_run(tmp_path / "runs", "faces", rows)
    out = tmp_path / "faces.parquet"
    result = _export("faces", "--root", str(tmp_path / "runs"), "--format", "parquet", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"({len(rows)} rows of 1 run" in result.output  # counted over every chunk, as the lines left out are
    assert "left out 3 malformed line(s) of metrics.jsonl" in result.output
    groups = [pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(out).num_row_groups)]
    assert len(groups) > 3 and min(groups[:-1]) >= 7, groups  # each but the last holds ROW_GROUP_ROWS rows or more
    table = pq.read_table(out)
    assert str(table.schema.field("step").type) == "int64" and str(table.schema.field("loss_d").type) == "double"
    written = table.to_pylist()
    assert len(written) == len(rows)
    for got, want in zip(written, rows, strict=True):
        assert got["run"] == "faces"
        for column, value in got.items():
            if column == "run":
                continue
            if column in want:
                assert _same(value, want[column]), (want["step"], column, value)
            else:
                assert value is None, (want["step"], column, value)  # absent is null, unlike a recorded NaN


def test_parquet_takes_integers_past_double_precision(tmp_path: Path):
    """A loop may log a big counter as an int: float64 holds it rounded, as the CSV's readers would."""
    pq = reader("pyarrow.parquet")
    rows = [{"step": 1, "t": START, "images_seen": 2**53 + 1}, {"step": 2, "t": START + 1, "images_seen": 2**63 + 5}]
    rows.append({"step": 3, "t": START + 2, "loss_d": 0.5})  # a row without it, in the same chunk: null there
    make_run(tmp_path / "runs", "counted", rows)
    out = tmp_path / "counted.parquet"
    result = _export("counted", "--root", str(tmp_path / "runs"), "--format", "parquet", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("images_seen").to_pylist() == [float(2**53 + 1), float(2**63 + 5), None]


def test_several_runs_make_one_tidy_table(tmp_path: Path):
    pd = reader("pandas")
    first, second = _rows(9), [{**row, "my_other": 1.5} for row in _rows(6, offset=0.5)]
    make_run(tmp_path / "runs", "a", first)
    make_run(tmp_path / "runs", "b", second)
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / f"t.{fmt}"
        result = _export("a", "b", "--root", str(tmp_path / "runs"), "--format", fmt, "--out", str(out))
        assert result.exit_code == 0, result.output
        table = read(out)
        assert list(table["run"]) == ["a"] * len(first) + ["b"] * len(second)
        assert {"my_metric", "my_other"} <= set(table.columns)
        assert table["my_other"].isna().sum() == len(first)
        assert list(table["loss_d"][len(first) :].dropna()) == [r["loss_d"] for r in second if "loss_d" in r]


def test_rows_written_during_the_export_are_not_half_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A run still training appends between the two passes: the export is the file as it stood when it began."""
    pd = reader("pandas")
    rows = _rows(12)
    run = make_run(tmp_path / "runs", "live", rows)
    first_pass = PinnedRows.names

    def names_then_append(self: PinnedRows, *args: Any) -> dict[str, None]:
        names = first_pass(self, *args)
        with open(run.metrics, "ab") as handle:
            handle.write(orjson.dumps({"step": 13, "t": START + 13, "new_name": 1.0}) + b"\n")
        return names

    monkeypatch.setattr(PinnedRows, "names", names_then_append)
    out = tmp_path / "live.csv"
    assert _export("live", "--root", str(tmp_path / "runs"), "--format", "csv", "--out", str(out)).exit_code == 0
    table = pd.read_csv(out)
    assert len(table) == len(rows) and "new_name" not in table.columns


def test_a_file_cut_back_and_grown_again_during_the_export_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A resume between the passes cuts metrics.jsonl back and writes on past its old size: other rows, same size."""
    rows = _rows(12)
    run = make_run(tmp_path / "runs", "regrown", rows)
    first_pass = PinnedRows.names

    def names_then_resume(self: PinnedRows, *args: Any) -> dict[str, None]:
        names = first_pass(self, *args)
        again = [{**row, "t": row["t"] + 100} for row in rows] + _rows(3)
        os.truncate(run.metrics, 0)  # as the worker does, in place: the same file
        with open(run.metrics, "ab") as handle:
            handle.write(b"".join(orjson.dumps(row) + b"\n" for row in again))
        return names

    monkeypatch.setattr(PinnedRows, "names", names_then_resume)
    out = tmp_path / "regrown.parquet"
    result = _export("regrown", "--root", str(tmp_path / "runs"), "--format", "parquet", "--out", str(out))
    assert result.exit_code == 1 and "was rewritten during the export" in result.output, result.output
    assert not out.exists()


def test_a_file_cut_back_during_the_export_leaves_the_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A resume rewinds metrics.jsonl between the passes: one sentence, the earlier export kept, no temp file."""
    run = make_run(tmp_path / "runs", "rewound", _rows(12))
    first_pass = PinnedRows.names

    def names_then_rewind(self: PinnedRows, *args: Any) -> dict[str, None]:
        names = first_pass(self, *args)
        run.metrics.write_bytes(orjson.dumps(_rows(2)[0]) + b"\n")
        return names

    monkeypatch.setattr(PinnedRows, "names", names_then_rewind)
    out = tmp_path / "rewound.csv"
    out.write_text("the earlier export\n")
    result = _export("rewound", "--root", str(tmp_path / "runs"), "--format", "csv", "--out", str(out))
    assert result.exit_code == 1
    assert "metrics.jsonl of run 'rewound' was rewritten during the export" in result.output
    assert result.output.rstrip().endswith("(a resume cuts it back); export again")
    assert out.read_text() == "the earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rewound.csv", "runs"]


def _pinned(run: RunDir) -> PinnedRows:
    return ganterm_run.GantermRun(run).pinned_rows()


def test_rows_appended_after_the_pin_stay_out_of_the_last_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The last chunk of a pass ends at the pinned size, even where a run still training wrote on past it."""
    monkeypatch.setattr(ganterm_run, "PINNED_CHUNK_BYTES", 300)  # several chunks, the last one short
    rows = _rows(12)
    run = make_run(tmp_path / "runs", "live", rows)
    pinned = _pinned(run)
    with open(run.metrics, "ab") as handle:
        handle.write(b'{"step":13,"t":1.0}\n' * 20)  # short rows: some would fit in the last chunk's room
    assert [row for chunk in pinned.chunks() for row in chunk] == rows


def test_the_progress_of_a_pass_adds_up_to_the_pinned_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`advance` drives the export's progress bar: each chunk's own bytes, so the bar ends full, not past it."""
    monkeypatch.setattr(ganterm_run, "PINNED_CHUNK_BYTES", 300)
    run = make_run(tmp_path / "runs", "counted", _rows(12))
    steps: list[int] = []
    for _ in _pinned(run).chunks(steps.append):
        pass
    assert len(steps) > 3 and sum(steps) == run.metrics.stat().st_size


@pytest.mark.parametrize(("fmt", "passes"), [("csv", 2), ("parquet", 2), ("tensorboard", 1)])
def test_the_progress_bar_of_a_whole_export_ends_exactly_full(tmp_path: Path, fmt: str, passes: int):
    """The bar's total is what every pass of the export reads, over every run: tables read each file twice (the
    first pass finds their columns), TensorBoard once."""
    from ganterm.export import export_history, open_histories, work_bytes
    from ganterm.sources import open_run

    runs = [make_run(tmp_path / "runs", name, _rows(steps)) for name, steps in (("a", 12), ("b", 30))]
    histories = open_histories([open_run(run.path) for run in runs])
    read: list[int] = []
    export_history(histories, fmt, tmp_path / f"out.{fmt}", read.append)
    assert sum(read) == work_bytes(histories, fmt) == passes * sum(run.metrics.stat().st_size for run in runs)


def test_a_tensorboard_export_that_fails_part_way_leaves_no_half_written_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A disk that fills while the second run is written: the error in one sentence, and nothing of the export left
    in --out (the first run's folder was still under its temporary name)."""
    from ganterm.export import tensorboard

    make_run(tmp_path / "runs", "a", _rows(5))
    make_run(tmp_path / "runs", "b", _rows(5))
    write_run = tensorboard.write_run

    def full_disk_on_b(history: Any, folder: Path, advance: Any) -> list[str]:
        if history.source.name == "b":
            raise OSError(28, "No space left on device")
        return write_run(history, folder, advance)

    monkeypatch.setattr(tensorboard, "write_run", full_disk_on_b)
    out = tmp_path / "tb"
    result = _export("a", "b", "--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code != 0 and "No space left on device" in result.output
    assert list(out.iterdir()) == []


def test_a_file_replaced_by_one_of_the_same_size_and_end_is_said(tmp_path: Path):
    """Another file put in its place (a copy restored, a sync) is not the pinned one, however alike its end."""
    rows = _rows(60)
    run = make_run(tmp_path / "runs", "swapped", rows)
    pinned = _pinned(run)
    other = run.metrics.read_bytes().replace(b'"epoch":0.1429', b'"epoch":0.9999', 1)  # the first rows differ
    assert len(other) == pinned.size and other[-ganterm_run.LAST_BYTES :] == pinned._last_bytes
    replacement = run.path / "metrics.new"
    replacement.write_bytes(other)
    os.replace(replacement, run.metrics)
    with pytest.raises(UserError, match="was rewritten during the export"):
        list(pinned.chunks())


def test_rows_with_names_beyond_ascii_are_pinned_wherever_their_last_bytes_start(tmp_path: Path):
    """The pinned end is compared as bytes: 4096 bytes from the end may fall inside a character of a name."""
    name = "Verlust_" + "ä" * 60  # two-byte characters, most of every row
    rows = [{"step": step, "t": START + step, name: 0.5} for step in range(1, 60)]
    run = make_run(tmp_path / "runs", "umlaut", rows)
    data = run.metrics.read_bytes()
    while data[-ganterm_run.LAST_BYTES] & 0xC0 != 0x80:  # not yet inside a character: one more row moves the edge
        rows.append({"step": len(rows) + 1, "t": START, name: 0.5, "x" * len(rows): 1})
        run.metrics.write_bytes(data + orjson.dumps(rows[-1]) + b"\n")
        data = run.metrics.read_bytes()
    pinned = _pinned(run)
    assert [row for chunk in pinned.chunks() for row in chunk] == rows


def test_a_file_cut_back_to_where_a_pass_has_read_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A resume rewinding metrics.jsonl to exactly the row a pass has reached: no more rows come, and it is said."""
    monkeypatch.setattr(ganterm_run, "PINNED_CHUNK_BYTES", 300)
    run = make_run(tmp_path / "runs", "rewound", _rows(12))
    read: list[int] = []
    chunks = _pinned(run).chunks(read.append)
    next(chunks)
    os.truncate(run.metrics, sum(read))
    with pytest.raises(UserError, match="was rewritten during the export"):
        list(chunks)


def _clean_run(root: Path, name: str, rows: list[dict[str, Any]]) -> PinnedRows:
    """A run whose metrics.jsonl holds `rows` alone, pinned as an export pins it."""
    run = make_run(root, name, rows)
    run.metrics.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return _pinned(run)


@pytest.mark.parametrize(("group_rows", "groups"), [(3, [3, 3, 3, 3]), (4, [6, 6])])
def test_a_parquet_row_group_is_the_chunks_that_first_reach_row_group_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_rows: int, groups: list[int]
):
    """Chunks of three rows: a group closes with the chunk that brings it to ROW_GROUP_ROWS, not one later."""
    pq = reader("pyarrow.parquet")
    rows = [{"step": step, "t": START + step, "loss_d": 0.5} for step in range(10, 22)]  # lines of one length
    monkeypatch.setattr(ganterm_run, "PINNED_CHUNK_BYTES", 3 * len(orjson.dumps(rows[0]) + b"\n"))
    monkeypatch.setattr(table_module, "ROW_GROUP_ROWS", group_rows)
    out = tmp_path / "grouped.parquet"
    table_module.write_parquet([_clean_run(tmp_path / "runs", "grouped", rows)], out, lambda _: None)
    metadata = pq.ParquetFile(out).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == groups


def test_parquet_keeps_a_step_past_double_precision_exact(tmp_path: Path):
    """Steps are int64 in Parquet: a counter-like step a loop logs is not rounded to the nearest double."""
    pq = reader("pyarrow.parquet")
    rows = [{"step": 2**53 + 1, "t": START, "loss_d": 0.5}, {"step": 2**60 + 3, "t": START + 1, "loss_d": 0.25}]
    out = tmp_path / "counted.parquet"
    table_module.write_parquet([_clean_run(tmp_path / "runs", "counted", rows)], out, lambda _: None)
    assert pq.read_table(out).column("step").to_pylist() == [2**53 + 1, 2**60 + 3]


def test_a_csv_is_utf_8_whatever_the_locale_says(tmp_path: Path):
    """A metric named beyond ASCII, exported under a locale whose encoding is ASCII: still written, as UTF-8."""
    pinned = _clean_run(tmp_path / "runs", "umlaut", [{"step": 1, "t": 5.0, "Verlust_ä": 0.5}])
    out = tmp_path / "umlaut.csv"
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        table_module.write_csv([pinned], out, lambda _: None)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert out.read_bytes() == "run,step,t,Verlust_ä\numlaut,1,5.0,0.5\n".encode()


# ----- TensorBoard -------------------------------------------------------------------------------------------------


def _accumulator(folder: Path) -> Any:
    event_accumulator = reader("tensorboard.backend.event_processing.event_accumulator")
    keep_all = {kind: 0 for kind in (event_accumulator.SCALARS, event_accumulator.IMAGES, event_accumulator.TENSORS)}
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance=keep_all)
    accumulator.Reload()
    return accumulator


def test_tensorboard_holds_every_value_grid_and_alert(tmp_path: Path):
    rows = _rows(25)
    run = make_run(tmp_path / "runs", "faces", rows, alerts=2, grids=(5, 10, 20))
    out = tmp_path / "tb"
    result = _export("faces", "--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["faces"] and f"({len(rows)} metrics rows of 1 run)" in result.output
    accumulator = _accumulator(out / "faces")
    tags = accumulator.Tags()
    assert {"loss/d", "loss/g", "D/x", "D/G(z)", "grad_norm/d", "quality/precision", "my_metric"} <= set(
        tags["scalars"]
    )
    names = {name for row in rows for name in row} - {"step", "t"}
    assert set(tags["scalars"]) == {tag(name) for name in names}
    for name in names:
        want = [(row["step"], row["t"], row[name]) for row in rows if name in row]
        got = [(e.step, e.wall_time, e.value) for e in accumulator.Scalars(tag(name))]
        assert len(got) == len(want), name
        for (step, wall_time, value), (want_step, want_t, want_value) in zip(got, want, strict=True):
            assert step == want_step and wall_time == want_t, name
            # TensorBoard keeps scalars as 32-bit floats
            assert _same(value, None if want_value is None else float(np.float32(want_value))), (name, step, value)
    images = accumulator.Images("samples")
    assert [(image.step, image.wall_time) for image in images] == [(s, START + s + 0.5) for s in (5, 10, 20)]
    assert [image.encoded_image_string for image in images] == [p.read_bytes() for p in run.sample_files()]
    assert {(image.width, image.height) for image in images} == {(32, 32)}
    tensor_util = reader("tensorboard.util.tensor_util")
    alerts = accumulator.Tensors("alerts/text_summary")
    assert [(a.step, tensor_util.make_ndarray(a.tensor_proto)[0].decode()) for a in alerts] == [
        (4, "warning (mode_collapse): G collapses (0)"),
        (5, "warning (mode_collapse): G collapses (1)"),
    ]
    assert [alert.wall_time for alert in alerts] == [START + 10, START + 11]  # when they were raised


def test_alerts_of_a_branch_a_resume_abandoned_are_left_out(tmp_path: Path):
    """events.jsonl keeps them; the metrics were cut back to the checkpoint, so the export leaves them out too."""
    run = make_run(tmp_path / "runs", "resumed", _rows(12))
    started = {"kind": "status", "state": "running", "total": 12}
    alert = {"kind": "alert", "check": "d_overpowers_g", "severity": "warning"}
    events = [
        {**started, "step": 0},
        {**alert, "step": 4, "message": "kept"},
        {**alert, "step": 6, "message": "at it", "severity": "error"},
    ]
    events += [{"kind": "alert", "step": 5}, {**alert, "step": 9, "message": "gone"}]  # one of another writer's, bare
    events += [{**started, "step": 6}, {**alert, "step": 10, "message": "new branch"}]
    run.events.write_bytes(b"".join(orjson.dumps({"t": START + i, **e}) + b"\n" for i, e in enumerate(events)))
    out = tmp_path / "tb"
    result = _export("resumed", "--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    tensor_util = reader("tensorboard.util.tensor_util")
    alerts = _accumulator(out / "resumed").Tensors("alerts/text_summary")
    texts = [tensor_util.make_ndarray(a.tensor_proto)[0].decode() for a in alerts]
    assert texts[1] == "error (d_overpowers_g): at it" and texts[2] == "warning (alert): "  # a bare alert's defaults
    messages = [text.rsplit(": ", 1)[1] for text in texts]
    assert messages == ["kept", "at it", "", "new branch"]  # the checkpoint's own step is in the history kept


def test_another_tools_run_without_wall_times_goes_to_tensorboard_with_none_made_up(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "logs", dcgan_records(1, 5))  # steps and values, no wall times
    out = tmp_path / "tb"
    result = _export(str(tmp_path / "logs"), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    scalars = _accumulator(out / "logs").Scalars("loss/d")
    assert [(event.step, event.wall_time) for event in scalars] == [(step, 0.0) for step in range(1, 6)]


def test_tensorboard_tags_of_a_real_run(trained_run: RunDir, tmp_path: Path):
    """What ganterm's own loop writes gets the tidy tags, one point per logged step."""
    out = tmp_path / "tb"
    result = _export(str(trained_run.path), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"tensorboard --logdir {out}" in result.output
    accumulator = _accumulator(out / trained_run.name)
    scalars = set(accumulator.Tags()["scalars"])
    assert {"loss/d", "loss/g", "D/x", "D/G(z)", "D/G(z)_at_G_step", "grad_norm/d", "grad_norm/g"} <= scalars
    logged = [orjson.loads(line) for line in trained_run.metrics.read_bytes().splitlines()]
    assert [e.step for e in accumulator.Scalars("loss/d")] == [row["step"] for row in logged if "loss_d" in row]
    assert [e.step for e in accumulator.Images("samples")] == [4, 8]


def test_tensorboard_export_loads_no_torch(tmp_path: Path):
    """tensorboardX imports torch where it can; the export keeps it out: 1.5 s and 500 MB less."""
    make_run(tmp_path / "runs", "faces", _rows(5))
    code = (
        "import sys\n"
        "from ganterm.cli import main\n"
        "try:\n    main()\n"
        "finally:\n    print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    args = ["export", "faces", "--root", "runs", "--format", "tensorboard", "--out", "tb"]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert len(list((tmp_path / "tb" / "faces").iterdir())) == 1


def test_checking_for_the_tensorboard_writer_asks_for_no_torch(monkeypatch: pytest.MonkeyPatch):
    """The same, in this process (where torch is loaded already): with torch and tensorboardX out of sys.modules for
    the test, `--format tensorboard`'s check imports tensorboardX without tensorboardX ever looking for torch."""
    import importlib.abc

    from ganterm.export import require_extra

    asked: list[str] = []

    class TorchWatch(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name.split(".")[0] == "torch":
                asked.append(name)
                raise ImportError("torch kept out by this test")

    before = set(sys.modules)
    for name in [name for name in sys.modules if name.split(".")[0] in ("torch", "tensorboardX")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [TorchWatch(), *sys.meta_path])
    try:
        require_extra("tensorboard")
        assert asked == []
        assert "tensorboardX" in sys.modules
    finally:  # the copies imported here go; monkeypatch puts the originals back
        for name in set(sys.modules) - before:
            del sys.modules[name]


def test_tensorboard_replaces_an_earlier_export_and_keeps_anything_else(tmp_path: Path):
    make_run(tmp_path / "runs", "a", _rows(5))
    make_run(tmp_path / "runs", "b", _rows(5))
    out = tmp_path / "tb"
    args = ("--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out))
    assert _export("a", *args).exit_code == 0
    assert _export("a", *args).exit_code == 0  # again: the folder is replaced, not added to
    assert len(list((out / "a").iterdir())) == 1
    (out / "b").mkdir()
    (out / "b" / "notes.txt").write_text("mine")
    result = _export("a", "b", *args)
    refused = (
        f"--out {str(out)!r} already holds {str(out / 'b')!r}, which is not an earlier export's event folder; "
        "move it or give another --out"
    )
    assert result.exit_code == 1 and "".join(refused.split()) in "".join(result.output.split())  # however wrapped
    assert (out / "b" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # no temp folders left


def test_tensorboard_export_into_new_folders_says_which_run_left_out_an_unreadable_grid(tmp_path: Path):
    """--out may name folders that are not there yet; a grid that is no PNG is left out and said, run by run."""
    first = make_run(tmp_path / "runs", "a", _rows(6), grids=(2, 4, 6))
    for step in (2, 4):
        first.sample_path(step).write_bytes(b"not a png: a copy cut short")
    make_run(tmp_path / "runs", "b", _rows(6), grids=(2,))
    out = tmp_path / "exports" / "tb"
    result = _export("a", "b", "--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "a: left out 2 unreadable sample grid(s)" in result.output and result.output.count("unreadable") == 1
    assert [image.step for image in _accumulator(out / "a").Images("samples")] == [6]
    assert [image.step for image in _accumulator(out / "b").Images("samples")] == [2]


# ----- what a user gets wrong, and missing extras ----------------------------------------------------------------


EXTRAS = [("parquet", "pyarrow", "parquet"), ("tensorboard", "tensorboardX", "tensorboard")]


@pytest.mark.parametrize(("fmt", "module", "extra"), EXTRAS)
def test_a_missing_extra_is_one_sentence_saying_how_to_install_it(
    fmt: str, module: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    make_run(tmp_path / "runs", "faces", _rows(5))
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    out = tmp_path / "out"
    result = _export("faces", "--root", str(tmp_path / "runs"), "--format", fmt, "--out", str(out))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: --format {fmt} needs {module}, which is not installed; install it with: pip install 'ganterm[{extra}]'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["a", "--format", "csv", "--out", "a.txt"], "--out 'a.txt' must name a .csv file for --format csv"),
        (["a", "--format", "parquet", "--out", "a.csv"], "--out 'a.csv' must name a .parquet file"),
        (["a", "b"], "--format generator writes one generator, and 2 runs were given"),
        (["a", "a", "--format", "csv"], "two of the runs given are named 'a'"),
        (["a", "--format", "tensorboard", "--out", "a.csv"], "--out 'a.csv' is not a folder"),
        (["empty", "--format", "csv"], "run 'empty' has no metrics.jsonl yet: nothing to export"),
        (["nope", "--format", "csv"], "no run named 'nope'"),
    ],
)
def test_mistakes_are_one_sentence_and_write_nothing(args: list[str], said: str, in_tmp: Path):
    make_run(in_tmp / "runs", "a", _rows(3))
    make_run(in_tmp / "runs", "b", _rows(3))
    (in_tmp / "runs" / "empty").mkdir()
    (in_tmp / "runs" / "empty" / "config.toml").write_text("")
    (in_tmp / "a.csv").write_text("mine")
    result = _export(*args)
    assert result.exit_code != 0 and said in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in in_tmp.iterdir()) == ["a.csv", "runs"] and (in_tmp / "a.csv").read_text() == "mine"


def test_a_terminal_sees_a_progress_bar_and_a_pipe_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A million rows take half a minute: in a terminal, stderr shows how far the export is."""
    from rich.console import Console

    from ganterm.cli import outputs

    make_run(tmp_path / "runs", "faces", _rows(30))
    args = ("faces", "--root", str(tmp_path / "runs"), "--format", "csv", "--out", str(tmp_path / "f.csv"))
    for terminal in (True, False):
        screen = io.StringIO()
        monkeypatch.setattr(outputs, "errors", Console(file=screen, force_terminal=terminal, width=100))
        assert _export(*args).exit_code == 0
        assert ("exporting faces to csv" in screen.getvalue()) is terminal
        assert "100%" in screen.getvalue() or not terminal


def test_default_names_of_the_output(in_tmp: Path):
    make_run(in_tmp / "runs", "a", _rows(3))
    make_run(in_tmp / "runs", "b", _rows(3))
    assert _export("a", "--format", "csv").exit_code == 0
    assert _export("a", "b", "--format", "parquet").exit_code == 0
    assert _export("--format", "tensorboard").exit_code == 0  # the newest run
    assert sorted(p.name for p in in_tmp.iterdir()) == ["a.csv", "runs", "runs.parquet", "tensorboard"]
    assert [p.name for p in (in_tmp / "tensorboard").iterdir()] == ["b"]


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_a_missing_reader_fails_in_ci_and_skips_elsewhere(ci: str, outcome: str, tmp_path: Path):
    """CI installs the [test] extra, readers included: a reader missing there is a failure, not a quiet skip."""
    blocked = tmp_path / "blocked" / "pandas"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('pandas blocked for this test')\n")
    test = "tests/test_export.py::test_csv_holds_every_row_and_value_of_metrics_jsonl"
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(blocked.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True, env=env | ({"CI": ci} if ci else {}),
        timeout=120,
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout + result.stderr
    if ci:
        assert "pandas is not installed, and CI=true" in result.stdout


def test_a_loops_config_is_a_column_in_tables_and_a_text_table_in_tensorboard(tmp_path: Path):
    pd = reader("pandas")
    tensor_util = reader("tensorboard.util.tensor_util")
    rows = _rows(6)
    configured = make_run(tmp_path / "runs", "configured", rows)
    configured.loop_config.write_text('{"lr": 0.0002, "betas": [0.5, 0.999], "data": {"root": "a|b"}, "seed": null}')
    make_run(tmp_path / "runs", "plain", _rows(4))
    root = ["--root", str(tmp_path / "runs")]
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / f"t.{fmt}"
        assert _export("configured", "plain", *root, "--format", fmt, "--out", str(out)).exit_code == 0
        table = read(out)
        assert list(table.columns[:6]) == [
            "run",
            "config.lr",
            "config.betas",
            "config.data.root",
            "config.seed",
            "step",
        ]
        assert table["config.seed"].isna().all()  # a setting left unset is an empty cell, not the text null
        assert list(table["config.lr"].astype(str)[: len(rows)]) == ["0.0002"] * len(rows)
        assert table["config.lr"][len(rows) :].isna().all()  # a run without config= has empty cells
        assert table["config.betas"][0] == "[0.5,0.999]"
    out = tmp_path / "tb"
    assert _export("configured", *root, "--format", "tensorboard", "--out", str(out)).exit_code == 0
    (config,) = _accumulator(out / "configured").Tensors("config/text_summary")
    assert config.wall_time == configured.loop_config.stat().st_mtime  # when the settings were written
    assert config.step == 0 and tensor_util.make_ndarray(config.tensor_proto)[0].decode().splitlines() == [
        "| setting | value |",
        "| --- | --- |",
        "| lr | 0.0002 |",
        "| betas | [0.5,0.999] |",
        "| data.root | a&#124;b |",
        "| seed | null |",
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_metric_named_run_from_an_older_record_is_said_not_silently_dropped(tmp_path: Path, fmt: str):
    """ganterm refuses the name now (see test_api); a record written before still exports, and says what it left."""
    if fmt == "parquet":
        reader("pyarrow")
    make_run(tmp_path / "runs", "old", [{"step": 1, "t": START, "loss_d": 0.5, "run": 3.0}])
    out = tmp_path / f"old.{fmt}"
    result = _export("old", "--root", str(tmp_path / "runs"), "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "old: left out its metric 'run' (the table's run column holds the run's name)" in result.output
    header = (
        out.read_text().splitlines()[0] if fmt == "csv" else ",".join(reader("pyarrow.parquet").read_schema(out).names)
    )
    assert header.split(",").count("run") == 1


def test_runs_of_a_raw_score_loss_say_their_family_in_tables_and_tensorboard(tmp_path: Path):
    """A critic's D/x is a raw score: the table gets a loss column and TensorBoard a line saying so."""
    pd = reader("pandas")
    tensor_util = reader("tensorboard.util.tensor_util")
    critic = make_run(tmp_path / "runs", "critic", _rows(6))
    write_status(critic, {"state": "finished", "step": 6, "loss": "wgan-gp"})
    make_run(tmp_path / "runs", "plain", _rows(4))
    root = ["--root", str(tmp_path / "runs")]
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / f"t.{fmt}"
        assert _export("critic", "plain", *root, "--format", fmt, "--out", str(out)).exit_code == 0
        table = read(out)
        assert list(table.columns[:3]) == ["run", "loss", "step"]
        assert dict(zip(table["run"], table["loss"], strict=True)) == {"critic": "critic", "plain": "probability"}
    out = tmp_path / "tb"
    assert _export("critic", "plain", *root, "--format", "tensorboard", "--out", str(out)).exit_code == 0
    (loss,) = _accumulator(out / "critic").Tensors("loss/text_summary")
    assert (loss.step, loss.wall_time) == (0, critic.status.stat().st_mtime)  # at the start, timed by its status
    assert tensor_util.make_ndarray(loss.tensor_proto)[0].decode().startswith("critic: D/x and D/G(z) are the critic's")
    assert "loss/text_summary" not in _accumulator(out / "plain").Tags()["tensors"]


def test_a_loops_own_name_equal_to_a_tidy_tag_stays_its_own_series_in_tensorboard(tmp_path: Path):
    """`loss/d` logged beside `loss_d` (whose tag is loss/d): TensorBoard would interleave them as one."""
    rows = [{"step": s, "t": START + s, "loss_d": 1.0, "loss/d": 50.0} for s in (1, 2, 3)]
    make_run(tmp_path / "runs", "twins", rows)
    out = tmp_path / "tb"
    assert (
        _export("twins", "--root", str(tmp_path / "runs"), "--format", "tensorboard", "--out", str(out)).exit_code == 0
    )
    accumulator = _accumulator(out / "twins")
    assert [event.value for event in accumulator.Scalars("loss/d")] == [1.0, 1.0, 1.0]
    assert [event.value for event in accumulator.Scalars("own/loss/d")] == [50.0, 50.0, 50.0]
