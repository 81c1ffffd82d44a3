"""End to end in a real terminal: `ganterm watch` on a live loop that logs through SummaryWriter, unchanged."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import ganterm

LOOP = Path(__file__).with_name("summary_writer_loop.py")


def _step(screen: str) -> int:
    found = re.search(r"step (\d+)", screen.splitlines()[0])
    return int(found.group(1)) if found else -1


def test_a_live_summary_writer_loop_is_watched_read_only_as_it_grows(tmp_path: Path, terminals):
    logdir = tmp_path / "logs" / "dcgan"
    loop = subprocess.Popen([sys.executable, str(LOOP), str(logdir), "90"])
    try:
        deadline = time.monotonic() + 60
        while not list(logdir.glob("events.out.tfevents.*")) and time.monotonic() < deadline:
            time.sleep(0.1)  # torch takes seconds to import
        code = Path(ganterm.__file__).parents[1]  # this checkout's, whichever copy the shell would find
        terminal = terminals(f"PYTHONPATH={code} {sys.executable} -m ganterm watch logs", tmp_path)
        # the read-only note (said once it has read some) and the footer: a screen caught while it is being drawn
        # has its top half and nothing below
        first = terminal.wait_for(
            lambda s: (
                "LIVE" in s
                and _step(s) > 0
                and "loss_d" in s
                and "read-only" in s
                and "q quit" in s
                and "histogram" in s
            ),  # passed over and counted
            60,
        )
        # its names read as ganterm's roles: the shared panels, and a probability D's line
        assert "D and G loss" in first and "D(x), D(G(z)) · 0.5 = equilibrium" in first
        assert "temperature" in first  # a name ganterm does not know gets a panel of its own
        footer = next(line for line in first.splitlines() if "q quit" in line)
        assert "pause" not in footer and "stop" not in footer
        later = terminal.wait_for(lambda s: _step(s) > _step(first) + 20)
        assert "LIVE" in later.splitlines()[0]
        terminal.press("p")  # a control key of ganterm's runs: this run is not ganterm's to pause
        terminal.wait_for(lambda s: "read-only" in s and _step(s) > _step(later))
        terminal.press("q")
        terminal.wait_for(lambda s: "EXITED 0" in s)
        assert loop.poll() is None  # watching never touched the loop
    finally:
        loop.kill()
        loop.wait()
