"""Commands to a running worker, through `control.jsonl`, acknowledged in `events.jsonl`.

Any viewer may send them, any number at once: each command carries an id and
the worker's event for it names that id as `ack`.
"""

from __future__ import annotations

import time
import uuid

from ganterm.errors import UserError
from ganterm.rundir import (
    ACTIVE_STATES,
    JsonlTail,
    RunDir,
    append_jsonl,
    effective_state,
    read_status,
    stalled_reason,
)

COMMAND_TIMEOUT_SECONDS = 30.0


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
                return event
        if effective_state(read_status(run)) not in ACTIVE_STATES:
            break
        time.sleep(0.1)
    status = read_status(run) or {}
    if effective_state(status) == "stalled":
        raise UserError(f"run {run.name!r} is stalled, so {command!r} waits until it goes on: {stalled_reason(status)}")
    raise UserError(f"the worker of run {run.name!r} did not acknowledge {command!r} within {timeout:.0f} s")
