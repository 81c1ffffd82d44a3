"""End to end in a real terminal: tmux runs `ganterm train`, we read the screen and press keys."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ganterm.rundir import RunDir, effective_state, read_status
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

TINY_FLAGS = (
    "--set model.width=8 --set model.z_dim=16 --set train.batch_size=16 --set train.device=cpu "
    "--set log.every=5 --set quality.every=0 --set sample.every=100 --set checkpoint.every=0"
)


class Terminal:
    """One tmux session of a fixed size running a shell command."""

    def __init__(self, command: str, cwd: Path, size: tuple[int, int] = (120, 40)) -> None:
        self.name = f"ganterm-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd),
             f"{command}; echo EXITED $?; sleep 600"],
            check=True,
        )  # fmt: skip

    def screen(self) -> str:
        result = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return result.stdout

    def press(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out; the screen shows:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminals():
    made: list[Terminal] = []
    yield lambda command, cwd: made.append(Terminal(command, cwd)) or made[-1]
    for terminal in made:
        terminal.kill()


def _train(name: str, steps: int) -> str:
    return f"{sys.executable} -m ganterm train --data ring --name {name} --steps {steps} {TINY_FLAGS}"


def _step(screen: str) -> int:
    header = screen.splitlines()[0]
    return int(header.split("step ")[1].split("/")[0].replace(",", ""))


def _wait_state(run: RunDir, wanted: set[str], timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = effective_state(read_status(run))
        if state in wanted:
            return state
        time.sleep(0.2)
    raise AssertionError(f"run stayed {effective_state(read_status(run))}")


def test_dashboard_updates_obeys_keys_and_quitting_leaves_training_running(tmp_path: Path, terminals):
    terminal = terminals(_train("e2e", 1_000_000), tmp_path)
    run = RunDir(tmp_path / "runs" / "e2e")
    first = terminal.wait_for(lambda s: "RUNNING" in s and "loss_d" in s, timeout=90)
    assert "D and G loss" in first and "D(x)" in first
    later = terminal.wait_for(lambda s: "RUNNING" in s and _step(s) > _step(first) + 20)
    assert "loss_d" in later
    terminal.press("p")
    terminal.wait_for(lambda s: "PAUSED" in s.splitlines()[0])
    paused_at = read_status(run)["step"]
    time.sleep(1.5)
    assert read_status(run)["step"] == paused_at
    terminal.press("p")
    terminal.wait_for(lambda s: "RUNNING" in s.splitlines()[0])
    terminal.press("q")
    terminal.wait_for(lambda s: "training continues in the background" in s and "EXITED 0" in s)
    assert effective_state(read_status(run)) == "running"
    assert run_cli(tmp_path, "stop", "e2e").returncode == 0
    assert _wait_state(run, {"stopped"}) == "stopped"


def test_training_survives_its_terminal_being_killed(tmp_path: Path, terminals):
    """What a dropped SSH connection does: the terminal and its process group get SIGHUP."""
    terminal = terminals(_train("dropped", 300), tmp_path)
    run = RunDir(tmp_path / "runs" / "dropped")
    terminal.wait_for(lambda s: "RUNNING" in s, timeout=90)
    terminal.kill()
    assert _wait_state(run, {"finished", "lost", "failed"}) == "finished"
    listing = run_cli(tmp_path, "runs")
    assert "dropped" in listing.stdout and "finished" in listing.stdout and "300/300" in listing.stdout
    watcher = terminals(f"{sys.executable} -m ganterm watch dropped", tmp_path)
    watcher.wait_for(lambda s: "FINISHED" in s and "step 300/300" in s)
