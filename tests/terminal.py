"""A real terminal for end-to-end tests: tmux runs a command, the test reads the screen and presses keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest


def require_tmux() -> None:
    """Without tmux these tests skip on a laptop, but fail in CI: a skip there would hide their gap."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("tmux is missing, and CI=true: install tmux so the end-to-end terminal tests run", False)
        pytest.skip("needs tmux")


class Terminal:
    """One tmux session of a fixed size running a shell command."""

    def __init__(self, command: str, cwd: Path, size: tuple[int, int] = (120, 40)) -> None:
        self.name = f"ganterm-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd),
             f"{command}; echo EXITED $?; sleep 600"],
            check=True,
        )  # fmt: skip

    def screen(self, escapes: bool = False) -> str:
        """The visible text; with `escapes`, also the colour sequences the program sent."""
        flags = ["-p", "-e"] if escapes else ["-p"]
        result = subprocess.run(["tmux", "capture-pane", *flags, "-t", self.name], capture_output=True, text=True)
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
