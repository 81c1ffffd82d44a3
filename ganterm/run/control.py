"""Commands to a running worker, through `control.jsonl`, acknowledged in `events.jsonl`.

Any viewer may send them, any number at once: each command carries an id and
the worker's event for it names that id as `ack`.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from ganterm.errors import UserError
from ganterm.run.jsonl import JsonlTail, append_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status, stalled_reason

COMMAND_TIMEOUT_SECONDS = 30.0
COMMANDS = ("pause", "unpause", "stop", "checkpoint", "sample")
OLD_NAMES = {"resume": "unpause"}  # as files written before the rename say it

Command = dict[str, Any]


def send(run: RunDir, command: str) -> str:
    """Append `command` for the worker; returns its id."""
    ident = uuid.uuid4().hex[:12]
    append_jsonl(run.control, {"t": time.time(), "cmd": command, "id": ident})
    return ident


def send_and_wait(run: RunDir, command: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> dict:
    """Send `command` to a live worker and return the event that acknowledges it."""
    state = effective_state(read_status(run))
    if state not in ACTIVE_STATES:
        raise UserError(f"run {run.name!r} is {state}, so there is no worker to {command} it")
    events = JsonlTail(run.events, from_end=True)
    ident = send(run, command)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events.read():
            if event.get("ack") == ident:
                if "refused" in event:
                    raise UserError(f"run {run.name!r} cannot {command}: {event['refused']}")
                return event
        if effective_state(read_status(run)) not in ACTIVE_STATES:
            break
        time.sleep(0.1)
    status = read_status(run) or {}
    if effective_state(status) == "stalled":
        raise UserError(f"run {run.name!r} is stalled, so {command!r} waits until it goes on: {stalled_reason(status)}")
    raise UserError(f"the worker of run {run.name!r} did not acknowledge {command!r} within {timeout:.0f} s")


class CommandInbox:
    """Commands from `control.jsonl` and from signals, in arrival order, for the run's one writer."""

    def __init__(self, run: RunDir, warn: Callable[[str], None], read_file: bool = True) -> None:
        # only commands written after the writer started count: old ones were for an earlier one
        self._tail = JsonlTail(run.control, from_end=True) if read_file else None
        self._signalled: list[Command] = []
        self._warn = warn

    def on_signal(self, number: int, _frame: object) -> None:
        self._signalled.append({"cmd": "stop", "signal": signal.Signals(number).name})

    def __call__(self) -> list[Command]:
        found, self._signalled = self._signalled, []
        if self._tail is None:  # a replica of a distributed run hears signals only
            return found
        before = self._tail.bad_lines
        for record in self._tail.read():
            name = OLD_NAMES.get(record.get("cmd"), record.get("cmd"))
            if name in COMMANDS:
                found.append({**record, "cmd": name})
            else:
                self._warn(f"ignoring unknown control command {record!r}")
        if self._tail.bad_lines > before:
            self._warn(f"skipped {self._tail.bad_lines - before} unreadable line(s) in control.jsonl")
        return found
