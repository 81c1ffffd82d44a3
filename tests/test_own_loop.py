"""examples/own_loop.py, a user's nested-epoch loop on ganterm.Run, steered from the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganterm.run.jsonl import latest_values, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from tests.conftest import run_cli, wait_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_loop.py"


def logged_step(run: RunDir) -> int:
    return latest_values(run.metrics, ("step",)).get("step", 0)


@pytest.fixture
def user_loop(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], RunDir]]:
    """The example, started for far more epochs than the test lets it run."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--epochs", "100", "--width", "8", "--root", "runs"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    run = RunDir(tmp_path / "runs" / "digits")
    try:
        wait_for(lambda: logged_step(run) >= 10)
        yield process, run
    finally:
        process.kill()
        process.wait()


def cli(run: RunDir, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli(run.path.parent.parent, *args, "digits", timeout=60)
    return result, time.monotonic() - started


def test_every_control_command_acts_on_a_users_own_loop(user_loop: tuple[subprocess.Popen[str], RunDir]):
    """pause holds the loop without a line of the user's code, unpause lets it go, checkpoint and
    snapshot call the user's callbacks, stop ends both nested loops; each answers within seconds."""
    process, run = user_loop

    result, took = cli(run, "pause")
    assert result.returncode == 0 and took < 10, result.stderr
    assert read_status(run)["state"] == "paused"
    held = logged_step(run)
    time.sleep(1.0)
    assert logged_step(run) == held and read_status(run)["step"] == held

    result, took = cli(run, "pause")  # already so: answered at once, and nothing done is no success
    assert result.returncode == 1 and took < 10 and "already paused; pause did nothing" in result.stderr

    result, _ = cli(run, "checkpoint")  # while paused: the user's on_checkpoint runs
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (run.path.parent / "digits-checkpoints").iterdir()) == [
        f"step_{held:07d}.safetensors"
    ]

    result, _ = cli(run, "unpause")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: logged_step(run) > held + 5)

    result, _ = cli(run, "snapshot")
    assert result.returncode == 0, result.stderr
    assert any(e["kind"] == "sample" and "ack" in e for e in read_jsonl(run.events))

    result, took = cli(run, "stop")
    assert result.returncode == 0 and took < 10, result.stderr
    assert process.wait(timeout=30) == 0
    assert read_status(run)["state"] == "stopped"
    assert process.stderr is not None and process.stderr.read() == ""  # no warnings, no tracebacks


def test_without_callbacks_checkpoint_and_sample_are_refused_at_once(tmp_path: Path):
    import threading

    import ganterm

    ready, done = threading.Event(), threading.Event()

    def loop() -> None:
        with ganterm.Run("plain", root=tmp_path / "runs", flush_every=1) as run:
            for step in run.steps(100_000):
                run.log(step, loss_d=0.5)
                ready.set()
                time.sleep(0.01)
        done.set()

    thread = threading.Thread(target=loop)
    thread.start()
    ready.wait(10)
    run = RunDir(tmp_path / "runs" / "plain")
    for command in ("checkpoint", "snapshot"):
        started = time.monotonic()
        result = run_cli(tmp_path, command, "plain")
        assert result.returncode != 0 and time.monotonic() - started < 10
        assert "fed by its own training loop, which does not take" in result.stderr
        assert "Traceback" not in result.stderr
    assert run_cli(tmp_path, "stop", "plain").returncode == 0
    thread.join(10)
    assert done.is_set() and read_status(run)["state"] == "stopped"


def test_a_users_wgan_gp_loop_is_recorded_and_listed_as_a_critic(tmp_path: Path):
    """examples/wgan_gp_loop.py: Run(loss="wgan-gp") records the family; raw scores, gap and penalty are logged."""
    example = EXAMPLE.with_name("wgan_gp_loop.py")
    args = ["--steps", "6", "--width", "4", "--batch-size", "16", "--n-critic", "2", "--root", "runs"]
    done = subprocess.run([sys.executable, str(example), *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = RunDir(tmp_path / "runs" / "wgan-digits")
    assert read_status(run)["loss"] == "wgan-gp" and read_status(run)["state"] == "finished"
    rows = read_jsonl(run.metrics)
    assert [row["step"] for row in rows] == list(range(1, 7))
    assert all(
        row["score_gap"] == pytest.approx(row["d_x"] - row["d_g_z1"], abs=1e-5) and row["gp"] >= 0 for row in rows
    )
    listing = run_cli(tmp_path, "runs")
    assert "critic(x)" in listing.stdout and "D(x)" not in listing.stdout, listing.stdout
