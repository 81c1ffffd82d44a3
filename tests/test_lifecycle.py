"""The worker as its own process: detach, control, kill -9, crashes, bad input files.

Every test here starts a real `ganterm train --detach` and talks to it only
through the run directory and the CLI, as a user in another SSH session would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ganterm.run.checkpoints import step_files
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import ACTIVE_STATES, HEARTBEAT_STALE_SECONDS, effective_state, read_status, write_status
from ganterm.training.checkpoint import load_checkpoint
from ganterm.waiting import wait_until_started
from tests import fault_worker
from tests.conftest import run_cli

TINY = [
    "--data", "ring", "--set", "model.width=16", "--set", "model.z_dim=8", "--set", "train.batch_size=32",
    "--set", "train.device=cpu", "--set", "log.every=5", "--set", "quality.every=0",
    "--set", "sample.every=0", "--set", "checkpoint.every=200",
]  # fmt: skip


def start(cwd: Path, name: str, steps: int = 1_000_000, *extra: str) -> RunDir:
    result = run_cli(cwd, "train", "--detach", "--name", name, "--steps", str(steps), *TINY, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"started {name}" in result.stdout and f"ganterm watch {name}" in result.stdout
    return RunDir(cwd / "runs" / name)


def start_faulty(cwd: Path, name: str, steps: int, faults: list[str], *extra: str) -> tuple[RunDir, subprocess.Popen]:
    """A worker with `faults` (tests/fault_worker.py) on a new run, configured as `ganterm train` would."""
    run = RunDir(cwd / "runs" / name)
    config = fault_worker.resolved_config(cwd, "--steps", str(steps), *TINY, *extra)
    return run, fault_worker.start(run.path, faults, config=config)


def wait_until(check: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state(run: RunDir) -> str:
    return effective_state(read_status(run))


def step(run: RunDir) -> int:
    return int((read_status(run) or {}).get("step", 0))


def kill_worker(run: RunDir) -> None:
    pid = read_status(run)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: state(run) == "lost", what="the run to read as lost")


@pytest.fixture
def workers(tmp_path: Path):
    """Whatever a test leaves running is killed at the end."""
    yield tmp_path
    for status in (tmp_path / "runs").glob("*/status.json"):
        run = RunDir(status.parent)
        if state(run) in ACTIVE_STATES:
            os.kill(read_status(run)["pid"], signal.SIGKILL)


def test_detach_runs_skips_bad_control_lines_pauses_unpauses_checkpoints_snapshots_stops(workers: Path):
    run = start(workers, "life")
    wait_until(lambda: step(run) > 20, what="training to start")
    listing = run_cli(workers, "runs").stdout
    assert "life" in listing and "running" in listing

    with open(run.control, "ab") as handle:  # bad lines, skipped: the command after them is still obeyed
        handle.write(b"this is not json\n[1, 2]\n")
    append_jsonl(run.control, {"cmd": "no-such-command", "id": "x"})
    assert run_cli(workers, "pause", "life").returncode == 0
    assert "skipping" in run.log.read_text() or "ignoring" in run.log.read_text()
    paused_at, beat = step(run), read_status(run)["heartbeat"]
    time.sleep(2.5)
    assert state(run) == "paused" and step(run) == paused_at
    assert read_status(run)["heartbeat"] > beat  # the worker is alive, just not stepping
    assert run_cli(workers, "unpause", "life").returncode == 0
    wait_until(lambda: step(run) > paused_at + 10, what="steps after unpause")

    result = run_cli(workers, "checkpoint", "life")
    assert result.returncode == 0, result.stderr
    assert any(e["kind"] == "checkpoint" and e.get("ack") for e in read_jsonl(run.events))
    assert run_cli(workers, "snapshot", "life").returncode == 0
    assert run.sample_files()

    result = run_cli(workers, "stop", "life")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: state(run) == "stopped", what="stopped")
    final = load_checkpoint(run.checkpoints / "latest.safetensors")
    assert final.step == step(run)


def test_a_stopped_worker_reads_as_stalled_keeps_its_run_goes_on_when_continued_and_stops_on_sigterm(workers: Path):
    run = start(workers, "frozen")
    wait_until(lambda: step(run) > 20, what="training to start")
    pid = read_status(run)["pid"]
    os.kill(pid, signal.SIGSTOP)  # what Ctrl-Z does, or a machine too short of memory to schedule it
    frozen_at = step(run)
    wait_until(lambda: state(run) == "stalled", timeout=HEARTBEAT_STALE_SECONDS + 10, what="the run to stall")
    assert "stalled" in run_cli(workers, "runs").stdout
    resumed = run_cli(workers, "train", "--resume", "frozen", "--no-dashboard")
    assert resumed.returncode != 0 and "is alive but has not reported" in resumed.stderr, resumed.stderr
    assert f"kill -CONT {pid}" in resumed.stderr
    os.kill(pid, signal.SIGCONT)
    wait_until(lambda: step(run) > frozen_at + 10, what="steps after SIGCONT")
    assert state(run) == "running"
    os.kill(pid, signal.SIGTERM)  # what a shutdown sends: the worker checkpoints and stops
    wait_until(lambda: state(run) == "stopped", what="stopped")
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == step(run)


# 15: before the first checkpoint; 230: after it; 420 (slow: the path of 230 again) after the second
@pytest.mark.parametrize("moment", [15, 230, pytest.param(420, marks=pytest.mark.slow)])
def test_kill_9_then_resume_continues_from_the_last_checkpoint(workers: Path, moment: int):
    run = start(workers, "killed")
    wait_until(lambda: step(run) >= moment, what=f"step {moment}")
    kill_worker(run)
    listing = run_cli(workers, "runs").stdout
    assert "lost" in listing
    assert read_jsonl(run.metrics)  # readable despite the kill
    result = run_cli(workers, "train", "--resume", "killed", "--steps", "500", "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert state(run) == "finished"
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 500
    steps = [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] == 500


def test_kill_9_during_the_third_checkpoint_write_keeps_the_earlier_ones(workers: Path):
    """Killed inside the 3rd write, with two checkpoints on disk: both stay intact and resume uses the newest."""
    marker = workers / "hanging"
    run, worker = start_faulty(workers, "midwrite", 1_000, ["--hang-checkpoint", "3:during", "--marker", str(marker)],
                               "--set", "checkpoint.every=20", "--set", "checkpoint.keep=5")  # fmt: skip
    wait_until(marker.exists, what="the third checkpoint write in progress")
    worker.kill()
    worker.wait()
    assert state(run) == "lost"
    assert [step for step, _ in step_files(run.checkpoints)] == [20, 40]
    assert any(run.checkpoints.glob(".step_0000060.safetensors.*.tmp"))  # the half-written file, left as it was
    assert load_checkpoint(run.checkpoints / "step_0000020.safetensors").step == 20
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 40
    result = run_cli(workers, "train", "--resume", "midwrite", "--steps", "100", "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at step 40" in run.log.read_text()
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 100
    assert not any(run.checkpoints.glob("*.tmp*"))
    steps = [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row]
    assert steps == list(range(1, 101))


def test_a_nan_is_skipped_and_reported_and_a_run_of_them_stops_the_run_keeping_the_last_good_checkpoint(
    workers: Path,
):
    bad = ",".join(str(s) for s in [50, *range(210, 260)])  # one at 50, then one every step from 210
    run, worker = start_faulty(workers, "nans", 400, ["--nan-at", bad], "--set", "train.max_bad_steps=5")
    assert worker.wait(timeout=180) != 0
    alerts = [e for e in read_jsonl(run.events) if e["kind"] == "alert"]
    assert next(a["step"] for a in alerts if a["check"] == "nonfinite") == 50  # reported, and training went on
    assert state(run) == "failed" and "non-finite" in read_status(run)["error"]
    checkpoint = load_checkpoint(run.checkpoints / "latest.safetensors")
    assert checkpoint.step == 200
    for tensors in (checkpoint.generator, checkpoint.discriminator):  # the step at 50 skipped, not applied
        assert all(torch.isfinite(t).all() for t in tensors.values())


def test_a_killed_viewer_leaves_training_alone(workers: Path):
    run = start(workers, "viewed", 600)
    viewer = subprocess.Popen([sys.executable, "-m", "ganterm", "watch", "viewed", "--no-dashboard"], cwd=workers,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(2)
    viewer.kill()
    viewer.wait()
    wait_until(lambda: state(run) in ("finished", "lost", "failed"), what="the run to end")
    assert state(run) == "finished" and step(run) == 600


def test_waiting_for_a_start_passes_the_log_on_but_not_a_traceback(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "crashed")
    run.path.mkdir(parents=True)
    run.log.write_text(
        "2026-11-24 10:00:00 loading data 'ring'\n"
        "2026-11-24 10:00:01 Traceback (most recent call last):\n"
        '  File "ganterm/worker.py", line 102, in run_worker\n'
        "OSError: [Errno 28] No space left on device\n"
        "2026-11-24 10:00:01 step 0: failed\n",
        encoding="utf-8",
    )
    write_status(run, {"state": "failed", "step": 0, "error": "no space left on the disk"})
    shown: list[str] = []
    assert wait_until_started(run, on_log=shown.append)["state"] == "failed"
    assert shown == ["2026-11-24 10:00:00 loading data 'ring'", "2026-11-24 10:00:01 step 0: failed"]


def test_waiting_for_a_start_passes_the_log_on_up_to_the_line_that_says_it_started(tmp_path: Path):
    """A run that finished before the wait looked: its later lines are the progress lines' to say, not said twice."""
    run = RunDir(tmp_path / "runs" / "quick")
    run.path.mkdir(parents=True)
    lines = [
        "2026-11-24 10:00:00 resumed from runs/quick/checkpoints/step_0000010.safetensors at step 10",
        "2026-11-24 10:00:01 rank 1: step 10: running",  # another rank's state line: rank 0's says the run's
        "2026-11-24 10:00:01 step 10: running",
    ]
    run.log.write_text("\n".join([*lines, "2026-11-24 10:00:01 step 20: finished", ""]), encoding="utf-8")
    write_status(run, {"state": "finished", "step": 20})
    shown: list[str] = []
    assert wait_until_started(run, on_log=shown.append)["state"] == "finished"
    assert shown == lines


def test_a_full_disk_fails_with_a_clear_message(workers: Path):
    run, worker = start_faulty(workers, "full", 100, ["--disk-full-metrics-at", "30"])
    assert worker.wait(timeout=180) != 0
    error = read_status(run)["error"]
    assert "no space left on the disk while writing" in error and "metrics.jsonl" in error
    assert "ganterm train --resume full" in error and "Traceback" not in error
    assert state(run) == "failed"


def test_a_full_disk_during_a_checkpoint_write_says_so_in_one_sentence(workers: Path):
    faults = ["--disk-full-checkpoint", "2"]
    run, worker = start_faulty(workers, "fullckpt", 100, faults, "--set", "checkpoint.every=20")
    assert worker.wait(timeout=180) != 0
    status = read_status(run)
    assert state(run) == "failed", status
    assert status["error"].startswith("no space left on the disk while writing"), status["error"]
    assert "step_0000040.safetensors" in status["error"] and "ganterm train --resume fullckpt" in status["error"]
    assert [step for step, _ in step_files(run.checkpoints)] == [20]
    assert not any(run.checkpoints.glob("*.tmp*"))  # the half-written temp file is removed


def test_a_completely_full_disk_reads_as_lost_once_the_worker_exits(workers: Path):
    """Nothing can be written, status.json included: it cannot say `failed`, but it must not read `running`."""
    run, worker = start_faulty(workers, "allfull", 100, ["--disk-full-from", "30"])
    assert worker.wait(timeout=180) != 0
    assert read_status(run)["state"] == "running"  # the last status that fitted on the disk
    assert state(run) == "lost"
    assert "no space left on the disk while writing" in run.log.read_text()
