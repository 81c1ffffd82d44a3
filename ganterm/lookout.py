"""The lookout: tells a run's notify URL when its worker stalls or is lost, which the worker cannot say itself.

A worker that is killed (kill -9, out of memory, a machine going down) or
stopped (kill -STOP, Ctrl-Z) cannot report it. `ganterm train` starts this
small torch-free process beside the worker of a run whose config names a
`notify.url`. It reads status.json every few seconds and judges it as any
viewer does (`effective_state`): it says `stalled` once per stall and `lost`
once, and ends when the run ends (the worker told that itself) or another
worker takes the run over. The URL is read from the run's config, so it
never shows in a process list.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ganterm.config import load_config
from ganterm.errors import UserError
from ganterm.logline import log
from ganterm.notify import Notifier
from ganterm.run.layout import RunDir
from ganterm.run.status import effective_state, read_status, stalled_reason, this_host
from ganterm.urls import shown_url

POLL_SECONDS = 2.0  # as often as the worker beats: one small file read
ENDED = ("finished", "stopped", "failed")


class Lookout:
    """Turns successive status.json reads into the notices they call for; `going` is False once nothing is left."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.going = True
        self._seen = False  # the worker got past starting: `ganterm train` has returned, so nobody else will tell
        self._started: Any = None  # which worker: its start time, as it wrote it
        self._stall_told = False

    def look(self, status: dict[str, Any] | None) -> tuple[str, str] | None:
        """The notice (event, message) this status calls for, if any."""
        if not status or (self._seen and status.get("started") != self._started):
            self.going = False  # the run was removed, or another worker took it over
            return None
        if not self._seen and status.get("state") not in (None, "starting"):
            self._seen, self._started = True, status.get("started")
        state = effective_state(status)
        if state in ENDED:
            self.going = False
        elif state == "lost":
            self.going = False
            if self._seen:  # a worker that dies while starting is told to the user who started it, by the launcher
                resume = f"ganterm train --resume {self.run.name}"
                return "lost", f"its worker (pid {status.get('pid')}) is gone; continue it with: {resume}"
        elif state == "stalled":
            if self._seen and not self._stall_told:
                self._stall_told = True
                return "stalled", f"stalled: {stalled_reason(status)}"
        else:
            self._stall_told = False
        return None


def keep_watch(run: RunDir, url: str, poll: float = POLL_SECONDS) -> None:
    notifier = Notifier(url, run.name, this_host(), log)
    lookout = Lookout(run)
    while lookout.going:
        status = read_status(run)
        told = lookout.look(status)
        if told is not None:
            event, message = told
            notifier.notice(event, int((status or {}).get("step", 0)), message=message)
            log(f"lookout: told {shown_url(url)} the run is {event}")
        if lookout.going:
            time.sleep(poll)
    notifier.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganterm.lookout", description="Tell notify.url of a stall.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between looks at status.json")
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    try:
        url = load_config(run.config).notify.url
    except UserError as error:
        log(f"lookout: {error}")
        return 2
    if url:
        keep_watch(run, url, args.poll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
