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

from ganterm.launch import wait_until_started
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import ACTIVE_STATES, HEARTBEAT_STALE_SECONDS, effective_state, read_status, write_status
from ganterm.training.checkpoint import load_checkpoint
from tests.conftest import run_cli

TINY = [
    "--data", "ring", "--set", "model.width=16", "--set", "model.z_dim=8", "--set", "train.batch_size=32",
    "--set", "train.device=cpu", "--set", "log.every=5", "--set", "quality.every=0",
    "--set", "sample.every=0", "--set", "checkpoint.every=200",
]  # fmt: skip


def start(cwd: Path, name: str, steps: int = 1_000_000, faults: str = "", *extra: str) -> RunDir:
    result = run_cli(cwd, "train", "--detach", "--name", name, "--steps", str(steps), *TINY, *extra,
                     env={"GANTERM_FAULTS": faults})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"started {name}" in result.stdout and f"ganterm watch {name}" in result.stdout
    return RunDir(cwd / "runs" / name)


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


def test_detach_runs_pause_unpause_checkpoint_snapshot_stop(workers: Path):
    run = start(workers, "life")
    wait_until(lambda: step(run) > 20, what="training to start")
    listing = run_cli(workers, "runs").stdout
    assert "life" in listing and "running" in listing

    assert run_cli(workers, "pause", "life").returncode == 0
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


def test_a_stopped_worker_reads_as_stalled_keeps_its_run_and_goes_on_when_continued(workers: Path):
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
    assert run_cli(workers, "stop", "frozen").returncode == 0


@pytest.mark.parametrize("moment", [15, 230, 420])
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


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_one(workers: Path):
    run = start(workers, "midwrite", 1_000_000, "slow_checkpoint=30")
    wait_until(lambda: any(run.checkpoints.glob("*.tmp*")) if run.checkpoints.exists() else False,
               what="a checkpoint write in progress")  # fmt: skip
    kill_worker(run)
    assert any(run.checkpoints.glob("*.tmp*"))  # the half-written file is left where it was
    assert not (run.checkpoints / "latest.safetensors").exists() or load_checkpoint(
        run.checkpoints / "latest.safetensors"
    )
    result = run_cli(workers, "train", "--resume", "midwrite", "--steps", "260", "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 260
    assert not any(run.checkpoints.glob("*.tmp*"))


def test_an_injected_nan_is_skipped_and_reported(workers: Path):
    result = run_cli(workers, "train", "--name", "nan", "--steps", "120", *TINY, "--no-dashboard",
                     env={"GANTERM_FAULTS": "nan_at=50"})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = RunDir(workers / "runs" / "nan")
    alerts = [e for e in read_jsonl(run.events) if e["kind"] == "alert"]
    assert any(a["check"] == "nonfinite" for a in alerts)
    checkpoint = load_checkpoint(run.checkpoints / "latest.safetensors")
    for tensors in (checkpoint.generator, checkpoint.discriminator):
        assert all(torch.isfinite(t).all() for t in tensors.values())


def test_a_run_of_nans_stops_the_run_keeping_the_last_good_checkpoint(workers: Path):
    bad = ",".join(str(s) for s in range(210, 260))
    result = run_cli(workers, "train", "--name", "nans", "--steps", "400", *TINY, "--set", "train.max_bad_steps=5",
                     "--no-dashboard", env={"GANTERM_FAULTS": f"nan_at={bad}"})  # fmt: skip
    assert result.returncode != 0 and "non-finite" in (result.stdout + result.stderr)
    run = RunDir(workers / "runs" / "nans")
    assert state(run) == "failed"
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 200


def test_sigterm_checkpoints_and_stops(workers: Path):
    run = start(workers, "term")
    wait_until(lambda: step(run) > 30, what="steps")
    os.kill(read_status(run)["pid"], signal.SIGTERM)
    wait_until(lambda: state(run) == "stopped", what="stopped")
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == step(run)


def test_a_killed_viewer_leaves_training_alone(workers: Path):
    run = start(workers, "viewed", 600)
    viewer = subprocess.Popen([sys.executable, "-m", "ganterm", "watch", "viewed", "--no-dashboard"], cwd=workers,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(2)
    viewer.kill()
    viewer.wait()
    wait_until(lambda: state(run) in ("finished", "lost", "failed"), what="the run to end")
    assert state(run) == "finished" and step(run) == 600


def test_bad_control_lines_are_skipped(workers: Path):
    run = start(workers, "garbled")
    wait_until(lambda: step(run) > 10, what="steps")
    with open(run.control, "ab") as handle:
        handle.write(b"this is not json\n[1, 2]\n")
    append_jsonl(run.control, {"cmd": "no-such-command", "id": "x"})
    assert run_cli(workers, "pause", "garbled").returncode == 0
    assert state(run) == "paused"
    assert "skipping" in run.log.read_text() or "ignoring" in run.log.read_text()


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


def test_a_full_disk_fails_with_a_clear_message(workers: Path):
    result = run_cli(workers, "train", "--name", "full", "--steps", "100", *TINY, "--no-dashboard",
                     env={"GANTERM_FAULTS": "disk_full_at=30"})  # fmt: skip
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "no space left on the disk while writing" in message and "metrics.jsonl" in message
    assert "Traceback" not in message
    run = RunDir(workers / "runs" / "full")
    assert state(run) == "failed" and "no space left" in read_status(run)["error"]
