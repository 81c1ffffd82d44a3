"""End to end in a real terminal: tmux runs `ganterm train`, we read the screen and press keys."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from ganterm.run.layout import RunDir
from ganterm.run.status import effective_state, read_status
from tests.conftest import run_cli
from tests.dashboard_runs import make_run

TINY_FLAGS = (
    "--set model.width=8 --set model.z_dim=16 --set train.batch_size=16 --set train.device=cpu "
    "--set log.every=5 --set quality.every=0 --set sample.every=100 --set checkpoint.every=0"
)


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


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _legend_marker_and_colour(screen: str, label: str) -> tuple[str, str]:
    """The two-character legend marker before `label`, and the colour sequence it was drawn in."""
    for line in screen.splitlines():
        cells, colour, at = [], "", 0  # each visible character with the last colour sequence before it
        for match in SGR.finditer(line):
            cells.extend((char, colour) for char in line[at : match.start()])
            colour, at = match.group(1), match.end()
        cells.extend((char, colour) for char in line[at:])
        plain = "".join(char for char, _ in cells)
        at = plain.find(f" {label} ")
        if at >= 2:
            return plain[at - 2 : at], cells[at - 1][1]
    raise AssertionError(f"no legend entry {label!r} on the screen")


def _watch_in(terminals, root: Path, environment: str) -> str:
    """The screen, escapes included, of `ganterm watch` on a finished run with `environment` set."""
    make_run(root, "shades", "finished")
    terminal = terminals(f"env -u COLORTERM {environment} {sys.executable} -m ganterm watch shades", root.parent)
    terminal.wait_for(lambda s: "FINISHED" in s and "loss_g" in s)
    time.sleep(0.5)  # one more redraw, so the plots carry the finished run's curves
    return terminal.screen(escapes=True)


def test_no_color_tells_series_apart_by_marker(tmp_path: Path, terminals):
    screen = _watch_in(terminals, tmp_path / "runs", "NO_COLOR=1")
    loss_d, _ = _legend_marker_and_colour(screen, "loss_d")
    loss_g, _ = _legend_marker_and_colour(screen, "loss_g")
    assert loss_d != loss_g


def test_a_16_colour_terminal_gets_only_its_16_colours_and_tells_series_apart(tmp_path: Path, terminals):
    screen = _watch_in(terminals, tmp_path / "runs", "TERM=xterm-16color")
    extended = [codes for codes in SGR.findall(screen) if re.search(r"(^|;)[34]8;", codes)]
    assert not extended, f"256-colour or RGB sequences sent to a 16-colour terminal: {extended[:5]}"
    (_, loss_d), (_, loss_g) = (_legend_marker_and_colour(screen, name) for name in ("loss_d", "loss_g"))
    assert loss_d and loss_g and loss_d != loss_g
