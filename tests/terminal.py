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
    """One tmux session of a fixed size running a shell command, on a tmux server of its own.

    A shared server exits when its last session is killed; another test's `new-session` that reached it in that
    moment failed with "server exited unexpectedly" (seen in CI with tests side by side). Its own socket also keeps
    the tests off a user's tmux.
    """

    def __init__(self, command: str, cwd: Path, size: tuple[int, int] = (120, 40)) -> None:
        self.name = f"ganterm-test-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.name, "-f", "/dev/null"]  # no user's tmux.conf either
        started = subprocess.run(
            [*self.tmux, "new-session", "-d", "-P", "-F", "#{socket_path}", "-s", self.name, "-x", str(size[0]),
             "-y", str(size[1]), "-c", str(cwd), f"{command}; echo EXITED $?; sleep 600"],
            stdout=subprocess.PIPE, text=True, check=True,  # tmux's complaint, if any, stays in the test's output
        )  # fmt: skip
        self.socket = Path(started.stdout.strip())

    def screen(self, escapes: bool = False) -> str:
        """The visible text; with `escapes`, also the colour sequences the program sent."""
        flags = ["-p", "-e"] if escapes else ["-p"]
        result = subprocess.run([*self.tmux, "capture-pane", *flags, "-t", self.name], capture_output=True, text=True)
        return result.stdout

    def title(self) -> str:
        """The pane's title, as the program inside set it."""
        result = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", self.name, "#{pane_title}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.rstrip("\n")

    def press(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out; the screen shows:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
        self.socket.unlink(missing_ok=True)
