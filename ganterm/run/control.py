"""Commands to a running worker, through `control.jsonl`, acknowledged in `events.jsonl`.

Any viewer may send them, any number at once: each command carries an id and
the worker's event for it names that id as `ack`.
"""

from __future__ import annotations

import os
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
COMMANDS = ("pause", "unpause", "stop", "checkpoint", "snapshot")
OLD_NAMES = {"resume": "unpause", "sample": "snapshot"}  # as files written before the renames say it

Command = dict[str, Any]


def send(run: RunDir, command: str) -> str:
    """Append `command` for the run's writer; returns its id.

    A line someone left without its newline would swallow the command, so the
    file is made to end with one first. A folder the user may not write to is
    one sentence, not a traceback.
    """
    ident = uuid.uuid4().hex[:12]
    try:
        with open(run.control, "ab+") as handle:
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
        append_jsonl(run.control, {"t": time.time(), "cmd": command, "id": ident})
    except OSError as error:
        raise UserError(
            f"cannot control run {run.name!r}: its folder is not writable by you ({error.strerror or error})"
        ) from None
    return ident


ALREADY = {"pause": "paused", "unpause": "running"}  # what a command leaves the run as


def send_and_wait(run: RunDir, command: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Send `command` to a live writer and return the event that says it was done.

    The one rule of every control command: returned means done; anything else
    (already so, no worker, refused, not yet) is a UserError saying why, at once,
    so the command exits non-zero. Already so is known without sending. A stalled
    worker gets the command, to act on when it goes on, and the caller is told
    so now. A writer that ends before answering (a stop raced by another stop)
    is read once more: the answer is written before the state changes.
    """
    status = read_status(run) or {}
    state = effective_state(status)
    if state not in ACTIVE_STATES:
        raise UserError(f"run {run.name!r} is {state}, so there is no worker to {command} it")
    if ALREADY.get(command) == state:
        raise UserError(f"run {run.name!r}: already {state}; {command} did nothing")
    controls = status.get("controls")
    if isinstance(controls, list) and command not in controls:
        raise UserError(f"run {run.name!r} is fed by its own training loop, which does not take {command!r}")
    events = JsonlTail(run.events, from_end=True)
    ident = send(run, command)
    if state == "stalled":
        raise UserError(f"run {run.name!r} is stalled; it will {command} when it goes on: {stalled_reason(status)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = effective_state(read_status(run)) not in ACTIVE_STATES
        for event in events.read():
            if event.get("ack") == ident:
                if "refused" in event:
                    raise UserError(f"run {run.name!r} cannot {command}: {event['refused']}")
                if event.get("kind") == "log":  # the worker found it so already (a pause from elsewhere came first)
                    raise UserError(f"run {run.name!r}: {event.get('message')}; {command} did nothing")
                return event
        if ended:
            final = read_status(run) or {}
            if command == "stop" and effective_state(final) == "stopped":  # another stop came first: stopped
                return {"kind": "status", "state": "stopped", "step": final.get("step")}
            raise UserError(f"run {run.name!r} ended ({effective_state(final)}) before it could {command}")
        time.sleep(0.1)
    raise UserError(f"the worker of run {run.name!r} did not answer {command!r} within {timeout:.0f} s")


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
