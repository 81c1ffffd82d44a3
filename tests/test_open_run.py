"""`ganterm.open_run(path)`: a run read from a script, torch-free, the way the viewers read it."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ganterm
from ganterm.errors import UserError
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import this_host, write_status
from tests.dashboard_runs import START, dead_pid


def test_a_finished_run_reads_as_its_files_say(trained_run: RunDir):
    run = ganterm.open_run(trained_run.path)
    rows = read_jsonl(trained_run.metrics)
    assert run.name == "tiny" and run.kind == "ganterm"
    assert run.status()["state"] == "finished" and run.status()["step"] == 8
    assert run.controls == ()  # an ended run takes no commands
    assert run.config()["train"]["steps"] == 8
    steps, values = run.metrics(["loss_d"])["loss_d"]
    assert steps.tolist() == [row["step"] for row in rows if "loss_d" in row]
    assert np.allclose(values, [row["loss_d"] for row in rows if "loss_d" in row])
    assert [step for step, _ in run.samples()] == [4, 8] and all(path.exists() for _, path in run.samples())
    assert [step for step, _ in run.checkpoints()] == [4, 8]
    assert [event["state"] for event in run.events("status")][-1] == "finished"


def test_the_history_is_one_table_with_a_gap_where_a_step_logged_nothing(tmp_path: Path):
    """Metrics logged every few steps line up with the others by step; pandas takes the dict as it is."""
    run = _run_with_rows(tmp_path, [{"step": s, "t": START + s, "loss_d": 0.1 * s} for s in range(1, 7)])
    with run.metrics.open("ab") as handle:
        handle.write(orjson.dumps({"step": 5, "t": START + 9, "fid": 42.0}) + b"\n")
    frame = pd.DataFrame(ganterm.open_run(run.path).history())
    assert frame["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert frame["fid"].isna().tolist() == [True, True, True, True, False, True]
    assert frame.loc[frame["step"] == 5, "fid"].item() == 42.0
    assert frame["loss_d"].round(3).tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert frame["step"].dtype == np.int64 and frame["fid"].dtype == np.float64  # values in double precision
    steps, values = ganterm.open_run(run.path).metrics()["fid"]  # a long run's arrays: values in half the memory
    assert (steps.dtype, values.dtype, ganterm.open_run(run.path).metrics()["t"][1].dtype) == (
        np.int64, np.float32, np.float64)  # fmt: skip
    picked = ganterm.open_run(run.path).history(["fid"])  # only what is asked for, over the steps that logged it
    assert sorted(picked) == ["fid", "step"] and picked["step"].tolist() == [5]


def test_a_run_that_logged_nothing_yet_reads_as_unknown_with_an_empty_history(tmp_path: Path):
    run = RunDir(tmp_path / "new")
    run.path.mkdir()
    run.config.write_text("")  # a run folder, its worker not yet started
    source = ganterm.open_run(run.path)
    assert source.status() == {"state": "unknown"}
    empty = source.history()
    assert list(empty) == ["step"] and empty["step"].dtype == np.int64 and len(empty["step"]) == 0


def test_a_run_name_is_found_under_the_root_and_a_wrong_one_is_one_sentence(tmp_path: Path):
    _run_with_rows(tmp_path, [{"step": 1, "t": START, "loss_d": 1.0}])
    assert ganterm.open_run("odd", root=tmp_path / "runs").path == tmp_path / "runs" / "odd"
    with pytest.raises(UserError, match="no run named 'even'"):
        ganterm.open_run("even", root=tmp_path / "runs")


def test_a_live_run_offers_the_commands_its_writer_takes(tmp_path: Path):
    run = _run_with_rows(tmp_path, [{"step": 1, "t": START, "loss_d": 1.0}])
    write_status(run, {"state": "running", "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(),
                       "controls": ["pause", "stop"]})  # fmt: skip
    assert ganterm.open_run(run.path).controls == ("pause", "stop")


def test_a_step_logged_again_keeps_its_newest_value_however_small_the_chunks_it_is_read_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A resumed user loop may log a step twice; a long history is read a few megabytes at a time."""
    rows = [{"step": s, "t": START + s, "loss_d": float(s)} for s in range(1, 21)]
    rows += [{"step": 5, "t": START + 30, "loss_d": 50.0}, {"step": 3, "t": START + 31, "loss_g": 7.0}]
    run = _run_with_rows(tmp_path, rows)
    whole = ganterm.open_run(run.path).history()
    monkeypatch.setattr("ganterm.sources.ganterm_run.CHUNK_BYTES", 64)  # a row or two a chunk
    chunked = ganterm.open_run(run.path).history()
    for history in (whole, chunked):
        assert history["step"].tolist() == list(range(1, 21))
        assert history["loss_d"][4] == 50.0 and history["loss_d"][19] == 20.0
        assert history["loss_g"][2] == 7.0 and np.isnan(history["loss_g"]).sum() == 19


def test_every_step_of_a_long_run_logged_again_keeps_its_newest_value(tmp_path: Path):
    """A loop resumed from an early checkpoint without rewinding logs each step again: the later row wins.

    Two hundred rows out of step order: numpy's default sort would mix up rows of one step (only a stable one keeps
    them in file order), where a few rows alone come out in order by luck.
    """
    rows = [{"step": s, "t": START + s, "loss_d": 1.0} for s in range(1, 101)]
    rows += [{"step": s, "t": START + 200 + s, "loss_d": 2.0} for s in range(1, 101)]
    history = ganterm.open_run(_run_with_rows(tmp_path, rows).path).history()
    assert history["step"].tolist() == list(range(1, 101))
    assert history["loss_d"].tolist() == [2.0] * 100
    assert history["t"].tolist() == [START + 200 + s for s in range(1, 101)]


def test_a_folder_with_rows_only_reads_as_external_with_no_settings_and_its_valid_rows_and_events(tmp_path: Path):
    run = RunDir(tmp_path / "theirs")
    run.path.mkdir()
    run.metrics.write_bytes(b'{"step":1,"t":1.0,"acc":0.5}\n{"step":"two","t":2.0}\n{"step":3,"t":3.0,"acc":0.75}\n')
    run.events.write_bytes(
        b'{"t":1.0,"step":1,"kind":"alert","check":"nan","message":"m"}\n{"t":2.0,"step":2,"kind":"log"}\n'
        b'{"t":3.0,"step":"3","kind":"alert"}\n'
    )
    source = ganterm.open_run(run.path)
    assert (source.status(), source.config(), source.controls) == ({"state": "external"}, {}, ())
    assert [row["step"] for row in source.rows()] == [1, 3]
    assert [event["step"] for event in source.events("alert")] == [1] and len(source.events()) == 2
    assert source.history()["acc"].tolist() == [0.5, 0.75] and repr(source) == f"<ganterm run 'theirs' at {run.path}>"
    assert (source.samples(), source.checkpoints()) == ([], [])


@pytest.mark.parametrize(
    ("state", "offered"), [("paused", True), ("starting", True), ("stalled", True), ("lost", False)]
)
def test_only_a_live_writer_offers_its_commands(tmp_path: Path, state: str, offered: bool):
    """A stalled writer (stopped with Ctrl-Z) acts on its commands when it goes on; a lost one never will."""
    run = _run_with_rows(tmp_path, [{"step": 1, "t": START, "loss_d": 1.0}])
    silent = state in ("stalled", "lost")
    # init (pid 1) is alive and older than any heartbeat: silent, it reads as stalled; a dead pid reads as lost
    pid = {"stalled": 1, "lost": dead_pid()}.get(state, os.getpid())
    write_status(run, {"state": "running" if silent else state, "pid": pid, "host": this_host(),
                       "heartbeat": time.time() - (60 if silent else 0), "controls": ["stop"]})  # fmt: skip
    assert ganterm.open_run(run.path).status()["state"] == state
    assert ganterm.open_run(run.path).controls == (("stop",) if offered else ())


ROWS = st.lists(
    st.fixed_dictionaries({"loss_d": st.floats(-1e6, 1e6, allow_nan=False), "loss_g": st.none() | st.floats(0, 10)}),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, cut=st.floats(0, 1), data=st.data())
def test_rows_come_exactly_once_however_the_file_is_torn_and_finished(tmp_path_factory, rows, cut, data):
    """A writer caught mid-line: the reader sees each whole row once, never a torn one, and the rest after."""
    root = tmp_path_factory.mktemp("torn")
    records = [{"step": i + 1, "t": START + i, **row} for i, row in enumerate(rows)]
    whole = b"".join(orjson.dumps(record) + b"\n" for record in records)
    at = int(cut * len(whole))
    run = _run_with_rows(root, [])
    run.metrics.write_bytes(whole[:at])
    source = ganterm.open_run(run.path)
    complete = whole[:at].count(b"\n")
    assert source.history()["step"].tolist() == list(range(1, complete + 1))
    run.metrics.write_bytes(whole)  # the writer finishes its line and goes on
    history = source.history()
    assert history["step"].tolist() == list(range(1, len(records) + 1))
    expected = [math.nan if record["loss_g"] is None else record["loss_g"] for record in records]
    assert np.allclose(history["loss_g"], expected, equal_nan=True, rtol=1e-6)
    picked = data.draw(st.sampled_from(["loss_d", "loss_g"]))
    assert set(source.metrics([picked])) == {picked}


def _run_with_rows(root: Path, rows: list[dict]) -> RunDir:
    run = RunDir(root / "runs" / "odd")
    run.path.mkdir(parents=True, exist_ok=True)
    run.metrics.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    write_status(run, {"state": "finished", "step": len(rows), "pid": dead_pid(), "host": "elsewhere",
                       "heartbeat": START})  # fmt: skip
    return run


def test_a_loop_run_reads_with_its_own_settings_and_the_checkpoints_it_saved(tmp_path: Path):
    """A `ganterm.Run` loop keeps its config= and saves checkpoints where it likes: open_run finds both."""
    saved = tmp_path / "mine" / "ckpt-4.pt"

    def save(step: int) -> Path | None:
        if step != 4:  # a save that does not say where: no file to list
            return None
        saved.parent.mkdir(exist_ok=True)
        saved.write_bytes(b"the loop's own format")
        return saved

    run = ganterm.Run("loop", root=tmp_path / "runs", config={"lr": 2e-4, "arch": {"width": 64}},
                      on_checkpoint=save, capture_output=False)  # fmt: skip
    for step in range(1, 5):
        run.log(step, loss_d=1.0 / step)
        if step in (2, 4):
            run.checkpoint()
    run.finish()
    source = ganterm.open_run(tmp_path / "runs" / "loop")
    assert source.config() == {"lr": 2e-4, "arch": {"width": 64}}
    assert source.checkpoints() == [(4, saved)]
    assert source.status()["state"] == "finished" and source.history()["step"].tolist() == [1, 2, 3, 4]


def test_a_notify_url_is_never_in_the_settings_a_script_reads(tmp_path: Path):
    """A webhook's URL is its secret: like every listing, open_run's config() leaves it out."""
    run = _run_with_rows(tmp_path, [{"step": 1, "t": START, "loss_d": 1.0}])
    run.config.write_text('[train]\nsteps = 5\n\n[notify]\nurl = "https://hooks.example/T0/S3cret"\n')
    assert ganterm.open_run(run.path).config() == {"train": {"steps": 5}, "notify": {}}


def test_following_a_run_hands_out_only_what_changed_poll_by_poll(tmp_path: Path):
    """`open_run(path).follow()`, what the dashboard polls: each poll holds what is new since the last, and a poll
    with nothing new is falsy, so a viewer can skip redrawing."""
    run = RunDir(tmp_path / "r")
    run.samples.mkdir(parents=True)
    run.metrics.write_bytes(b'{"step":1,"t":1.0,"loss_d":0.5}\n{"step":2,"t":2.0,"loss_d":0.25}\n')
    run.events.write_bytes(b'{"t":1.0,"step":1,"kind":"log","message":"started"}\n')
    write_status(run, {"state": "running", "step": 2})
    run.loop_config.write_text('{"lr": 0.1}')
    run.log.write_text("step 1\n")
    run.sample_path(1).write_bytes(b"png")
    follower = ganterm.open_run(run.path).follow()
    first = follower.poll()
    assert (first.rows, first.columns["loss_d"][0].tolist(), [event["step"] for event in first.events]) == (
        2,
        [1, 2],
        [1],
    )
    assert (first.status, first.settings, first.log_lines) == ({"state": "running", "step": 2}, {"lr": 0.1}, ["step 1"])
    assert first.samples == [run.sample_path(1)] and first.skipped == 0 and not first.more
    nothing = follower.poll()
    assert not nothing and (nothing.status, nothing.samples, nothing.settings, nothing.log_lines) == (
        None,
        None,
        None,
        [],
    )
    changes = [
        (lambda: _append(run.metrics, b'{"step":3,"t":3.0,"loss_d":0.125}\n'), "rows", 1),
        (lambda: _append(run.events, b'{"t":3.0,"step":3,"kind":"alert","check":"nan"}\n'), "events", 1),
        (lambda: write_status(run, {"state": "paused", "step": 3}), "status", {"state": "paused", "step": 3}),
        (lambda: _append(run.log, b"step 3\n"), "log_lines", ["step 3"]),
        (lambda: _new_sample(run, 3), "samples", [run.sample_path(1), run.sample_path(3)]),
        (lambda: run.loop_config.write_text('{"lr": 0.05}'), "settings", {"lr": 0.05}),
        (lambda: _append(run.events, b"not json\n"), "skipped", 1),
    ]
    for change, field, value in changes:
        change()
        update = follower.poll()
        got = getattr(update, field)
        assert update and (len(got) if field == "events" else got) == value, field
        assert not follower.poll(), field
    run.metrics.write_bytes(b'{"step":1,"t":1.0,"loss_d":0.5}\n')  # cut back by a resume
    assert follower.poll().reset


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def _new_sample(run: RunDir, step: int) -> None:
    """A grid written a second later: the folder's time says so even where the clock's steps are coarse."""
    before = run.samples.stat().st_mtime_ns
    run.sample_path(step).write_bytes(b"png")
    os.utime(run.samples, ns=(before + 10**9, before + 10**9))


def test_following_a_run_with_a_long_log_starts_at_a_whole_line_of_its_last_32_kib(tmp_path: Path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.metrics.write_bytes(b'{"step":1,"t":1.0,"loss_d":0.5}\n')
    lines = [f"line {i:05d} " + "x" * 90 for i in range(400)]  # 100 bytes a line, 40,000 in all
    run.log.write_text("".join(line + "\n" for line in lines))
    shown = ganterm.open_run(run.path).follow().poll().log_lines
    assert shown == lines[-len(shown) :] and 300 < len(shown) < 328  # the newest 32 KiB, the cut line left out


def test_the_settings_of_a_loops_run_are_its_config_as_dotted_keys(tmp_path: Path):
    """As `ganterm runs` and the exports show them."""
    with ganterm.Run("own", root=tmp_path, config={"lr": 0.1, "arch": {"width": 64}}, capture_output=False) as run:
        run.log(1, loss_d=0.5)
    assert ganterm.open_run(tmp_path / "own").settings() == {"lr": 0.1, "arch.width": 64}
