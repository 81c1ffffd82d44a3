"""The run-directory contract: whole lines, torn tails, atomic status, lost and stalled workers, run lookup."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ganterm.errors import UserError
from ganterm.run.jsonl import JsonlTail, JsonlWriter, latest_values
from ganterm.run.layout import RunDir, resolve_run
from ganterm.run.lock import RunLocked, acquire_lock
from ganterm.run.rewind import rewind
from ganterm.run.status import effective_state, read_status, this_host, write_status


def test_nan_and_infinity_are_written_as_null(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as writer:
        writer.write([{"step": 1, "loss_d": float("nan"), "loss_g": float("inf"), "d_x": 0.5}])
    assert path.read_text() == '{"step":1,"loss_d":null,"loss_g":null,"d_x":0.5}\n'


def test_torn_last_line_waits_for_its_end(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1,"loss_d":0.5}\n{"step":2,"lo')
    tail = JsonlTail(path)
    assert tail.read() == [{"step": 1, "loss_d": 0.5}]
    assert tail.read() == []
    with open(path, "ab") as handle:
        handle.write(b'ss_d":0.25}\n')
    assert tail.read() == [{"step": 2, "loss_d": 0.25}]
    assert tail.bad_lines == 0


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind":"sample"}\nthis is not json\n[1,2]\n\n{"kind":"alert"}\n')
    tail = JsonlTail(path)
    assert [r["kind"] for r in tail.read()] == ["sample", "alert"]
    assert tail.bad_lines == 2


def test_tail_notices_a_rewound_file_and_starts_over(tmp_path: Path):
    run = RunDir(tmp_path)
    run.metrics.write_bytes(b"".join(b'{"step":%d}\n' % s for s in range(1, 6)))
    tail = JsonlTail(run.metrics)
    assert len(tail.read()) == 5
    rewind(run, 2)
    assert tail.read() == [{"step": 1}, {"step": 2}]
    assert tail.reset


def test_rewind_drops_later_samples(tmp_path: Path):
    run = RunDir(tmp_path)
    run.samples.mkdir()
    for step in (100, 200, 300):
        run.sample_path(step).write_bytes(b"png")
    rewind(run, 200)
    assert [p.name for p in run.sample_files()] == ["step_0000100.png", "step_0000200.png"]


def test_latest_values_reads_from_the_end_past_a_torn_line(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(b'{"step":%d,"pad":"%s"}\n' % (s, b"x" * 100) for s in range(5000)) + b'{"step":50')
    assert latest_values(path, ("step",))["step"] == 4999


def test_corrupted_status_reads_as_unknown_with_the_problem_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The problem is a value the viewer shows; nothing is printed behind a full-screen dashboard's back."""
    run = RunDir(tmp_path)
    run.status.write_text('{"state": "runn')
    status = read_status(run)
    assert effective_state(status) == "unknown"
    assert "status.json is not valid JSON" in status["problem"]
    assert capsys.readouterr().err == ""


def test_files_the_run_did_not_write_are_not_its_samples(tmp_path: Path):
    """A copy a user made beside the grids neither counts as a sample nor stops a rewind."""
    run = RunDir(tmp_path)
    run.samples.mkdir()
    for name in ("step_0000100.png", "step_0000300.png", "step_0000300 (copy).png", "notes.txt", "step_12.png"):
        (run.samples / name).write_bytes(b"png")
    assert [p.name for p in run.sample_files()] == ["step_0000100.png", "step_0000300.png"]
    rewind(run, 200)
    assert sorted(p.name for p in run.samples.iterdir()) == [
        "notes.txt",
        "step_0000100.png",
        "step_0000300 (copy).png",
        "step_12.png",
    ]


def test_status_is_replaced_atomically(tmp_path: Path):
    run = RunDir(tmp_path)
    write_status(run, {"state": "running", "step": 3})
    assert read_status(run) == {"state": "running", "step": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_dead_worker_reads_as_lost_and_a_silent_live_one_as_stalled():
    now = time.time()
    alive = {"state": "running", "heartbeat": now, "pid": os.getpid(), "host": this_host()}
    assert effective_state(alive, now) == "running"
    assert effective_state(alive, now + 60) == "stalled"  # this process is alive, but silent for a minute
    assert effective_state({**alive, "host": "elsewhere"}, now + 60) == "lost"  # only the beat tells there
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert effective_state({**alive, "pid": dead.pid}, now) == "lost"
    with subprocess.Popen(["sleep", "30"]) as newer:  # a process that took the pid of a worker gone since
        try:
            assert effective_state({**alive, "pid": newer.pid, "heartbeat": now - 60}, now) == "lost"
        finally:
            newer.kill()
    assert effective_state({**alive, "state": "finished", "heartbeat": now - 3600}, now) == "finished"
    assert effective_state(None) == "unknown"


def test_runs_resolve_by_name_path_or_newest(tmp_path: Path):
    root = tmp_path / "runs"
    for name in ("older", "newer"):
        (root / name).mkdir(parents=True)
        (root / name / "config.toml").write_text("")
        time.sleep(0.02)
    assert resolve_run(None, root).name == "newer"
    assert resolve_run("older", root).name == "older"
    assert resolve_run(str(root / "older"), root).name == "older"
    with pytest.raises(UserError, match=r"no run named 'nope' under .* \(runs there: older, newer\)"):
        resolve_run("nope", root)
    with pytest.raises(UserError, match="there are no runs under"):
        resolve_run(None, tmp_path / "empty")


def test_a_second_worker_cannot_take_the_run(tmp_path: Path):
    run = RunDir(tmp_path)
    held = acquire_lock(run)
    try:
        with pytest.raises(RunLocked, match=f"already being trained by process {os.getpid()}"):
            acquire_lock(run)
    finally:
        os.close(held)
    os.close(acquire_lock(run))
