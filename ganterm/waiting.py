"""Waiting on a run's processes without blocking on them: until a worker has let go, has started, or a node has ended.

Everything here reads the run's files and process table only, so a viewer
can wait on a worker it did not start, on another shell's behalf.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ganterm.errors import UserError
from ganterm.logline import LOG_TIMESTAMP, STATE_LINE
from ganterm.notify import CLOSE_WAIT_SECONDS
from ganterm.run.jsonl import TextTail
from ganterm.run.layout import RunDir
from ganterm.run.lock import lock_holder
from ganterm.run.status import (
    ACTIVE_STATES,
    effective_state,
    pid_alive,
    read_status,
    stalled_reason,
    started_before,
    this_host,
)
from ganterm.scale import Scale, node_folder, worker_log

START_TIMEOUT_SECONDS = 120.0  # without any sign of life from the worker
ENDING_WORKER_WAIT_S = 2 * CLOSE_WAIT_SECONDS  # a worker's last notices get that long, then it exits


def ensure_idle(run: RunDir, wait_s: float = ENDING_WORKER_WAIT_S, say: Callable[[str], None] = print) -> None:
    """The run may be trained: nobody trains it, and a worker that has just ended has let go of it.

    A worker that wrote its final state still holds the run while its last notices go out (up to 10 s
    against a receiver that is down); a resume right after the end waits for it instead of failing.
    """
    status = read_status(run) or {}
    state = effective_state(status)
    if state == "stalled":
        raise UserError(f"run {run.name!r} is stalled: {stalled_reason(status)}")
    if state in ACTIVE_STATES:
        raise UserError(f"run {run.name!r} is {state}; stop it first with: ganterm stop {run.name}")
    deadline = time.monotonic() + wait_s
    holder = lock_holder(run)
    if holder is not None:
        say(f"waiting up to {wait_s:.0f} s for the run's last worker (process {holder}) to send its last notices")
    while holder is not None:
        if time.monotonic() > deadline:
            raise UserError(
                f"run {run.name!r} is {state}, but its worker (process {holder}) has not let go of it after "
                f"{wait_s:.0f} s; try again once it has exited"
            )
        time.sleep(0.1)
        holder = lock_holder(run)
    _wait_for_supervisor(run, status, deadline, say)


def _wait_for_supervisor(run: RunDir, status: dict, deadline: float, say: Callable[[str], None]) -> None:
    """A run of several processes: their supervisor outlives its ranks by seconds and writes the log's last line.

    A resume that started meanwhile would show that line as its own, and on node 0 of several machines
    find the rendezvous port still taken.
    """
    pid, started = status.get("supervisor"), status.get("started")
    if not (isinstance(pid, int) and isinstance(started, (int, float)) and status.get("host") == this_host()):
        return
    if pid_alive(pid) and started_before(pid, started):  # a pid handed out again began later
        say(f"waiting for the run's last supervisor (process {pid}) to end")
    while pid_alive(pid) and started_before(pid, started):
        if time.monotonic() > deadline:
            raise UserError(
                f"run {run.name!r} has ended, but the supervisor of its processes (process {pid}) has not; "
                "try again once it has exited"
            )
        time.sleep(0.1)


def wait_until_started(run: RunDir, on_log: Callable[[str], None] = lambda line: None, log_from: int = 0) -> dict:
    """Wait while the worker loads; pass on what it logs from `log_from` on, up to the state line that ends the
    start (what follows is the progress lines' to say). Returns the status it reached.

    A resumed run's log holds its earlier workers' lines: `Started.log_offset`
    skips them. Tracebacks are left in worker.log: a failed start ends in one
    sentence, which names the log when there is more to read.
    """
    log = TextTail(run.log)
    if log_from and run.log.exists():
        log.start_at(log_from)
    last_sign = time.monotonic()
    in_traceback = said_state = False

    def pass_on() -> None:
        nonlocal in_traceback, said_state
        for line in log.read():
            if said_state:
                return
            stamped = LOG_TIMESTAMP.match(line)
            if stamped:  # a traceback's own lines carry no timestamp; the next logged line ends it
                in_traceback = line[stamped.end() :].startswith("Traceback")
                said_state = bool(STATE_LINE.fullmatch(line[stamped.end() :]))
            if not in_traceback:
                on_log(line)

    while True:
        pass_on()
        status = read_status(run) or {}
        state = effective_state(status)
        if state not in ("starting", "unknown", "stalled"):  # stalled: still importing torch on a slow disk
            pass_on()  # what it logged before it said so
            return {**status, "state": state}
        if status.get("heartbeat", 0) > time.time() - 5:
            last_sign = time.monotonic()
        if time.monotonic() - last_sign > START_TIMEOUT_SECONDS:
            return {**status, "state": "lost"}
        time.sleep(0.1)


def follow_node(run: RunDir, pid: int, log_offset: int, scale: Scale, on_log: Callable[[str], None]) -> int:
    """On a machine other than the first: pass its log on until its ranks end; the exit code says how."""
    on_log(
        f"this is node {scale.node_rank} of {scale.nnodes}: it trains, node 0 records the run, "
        f"and this machine keeps only its config and log, in {node_folder(run, scale)}/"
    )
    log = TextTail(worker_log(run, scale))
    log.start_at(log_offset)
    while True:
        gone = not pid_alive(pid)  # read once more after the supervisor ended: its last line
        for line in log.read():
            on_log(line)
            if f"node {scale.node_rank}: all ranks ended" in line:
                return 0
            if f"node {scale.node_rank}: failed:" in line:
                return 1
        if gone:
            on_log(f"the supervisor of node {scale.node_rank} ended without a word; see {worker_log(run, scale)}")
            return 1
        time.sleep(0.2)
