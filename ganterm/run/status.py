"""status.json: what a run's writer says about itself, and what a viewer should believe.

The writer's `StatusBoard` replaces the file atomically on every change and
beats every `HEARTBEAT_SECONDS`; `effective_state` turns that into the state a
person should see, judging liveness by pid and heartbeat (`lost`, `stalled`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

import orjson

from ganterm.run.files import write_atomic
from ganterm.run.layout import RunDir
from ganterm.run.text import clipped

ACTIVE_STATES = ("starting", "running", "paused", "stalled")  # stalled: derived, never written
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_STALE_SECONDS = 20.0


def write_status(run: RunDir, status: dict[str, Any]) -> None:
    """Replace status.json whole, its texts clipped to a few KB (`text.clip`)."""
    write_atomic(run.status, orjson.dumps(clipped(status), option=orjson.OPT_INDENT_2))


def read_status(run: RunDir) -> dict[str, Any] | None:
    """The status, or None when missing.

    A damaged file is no exception a viewer must catch: it reads as a status of
    unknown state whose `problem` says what is wrong, for the caller to show.
    """
    try:
        raw = run.status.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        return {"problem": f"{run.status} cannot be read ({error.strerror or error})"}
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"problem": f"{run.status} is not valid JSON"}
    if not isinstance(status, dict):
        return {"problem": f"{run.status} does not hold an object"}
    return status


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Read from /proc on Linux; elsewhere no process is taken for a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"  # field 3, state
    except (OSError, IndexError):
        return False


def started_before(pid: int, moment: float) -> bool:
    """Whether process `pid` began before `moment`: a pid the kernel handed out again began later.

    Read from /proc on Linux; elsewhere the answer is yes, as if the pid were never reused.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            start_ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    return boot + start_ticks / os.sysconf("SC_CLK_TCK") <= moment + 2  # btime has whole seconds


def effective_state(status: dict[str, Any] | None, now: float | None = None) -> str:
    """The state a person should see: an active run with no live worker is `lost`.

    A worker that is alive on this machine but has stopped beating (stopped with
    Ctrl-Z or kill -STOP, or a machine swapping hard) is `stalled`: it may go on,
    and it still holds the run, so it must not read as gone.
    """
    if not status:
        return "unknown"
    state = str(status.get("state", "unknown"))
    if state not in ACTIVE_STATES:
        return state
    heartbeat = status.get("heartbeat")
    beat = heartbeat if isinstance(heartbeat, (int, float)) else 0.0
    stale = (time.time() if now is None else now) - beat > HEARTBEAT_STALE_SECONDS
    pid = status.get("pid")
    if status.get("host") != this_host() or not isinstance(pid, int):
        return "lost" if stale else state  # a worker on another machine can only be judged by its beat
    if not pid_alive(pid):
        return "lost"
    if stale:
        return "stalled" if started_before(pid, beat) else "lost"
    return state


def stalled_reason(status: dict[str, Any]) -> str:
    """Why a run reads as stalled, and what a person can do about it (a clock time, so it never goes stale)."""
    since = time.strftime("%H:%M:%S", time.localtime(float(status.get("heartbeat") or 0)))
    pid = status.get("pid")
    return (
        f"its worker (pid {pid}) is alive but has not reported since {since}: it was stopped "
        f"(kill -CONT {pid} lets it go on) or the machine is short of memory"
    )


class StatusBoard:
    """Owns status.json for a worker: state changes, step, and a heartbeat thread.

    The heartbeat keeps beating while the loop is paused or busy writing a
    checkpoint, so viewers can tell a slow worker from a dead one (`lost`).
    """

    def __init__(self, run: RunDir, **fields: Any) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"pid": os.getpid(), "host": this_host(), **fields}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    @property
    def state(self) -> str:
        return str(self._status.get("state", ""))

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._status.update(fields)
            self._write()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            # a full disk must not kill the thread: the next beat tries again, and the loop's
            # own writes meet the same disk and report it
            with self._lock, contextlib.suppress(OSError):
                self._write()

    def _write(self) -> None:
        self._status["heartbeat"] = time.time()
        write_status(self.run, self._status)
