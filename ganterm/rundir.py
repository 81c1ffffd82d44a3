"""The run directory: the only interface between a training loop and its viewers.

Layout (see DESIGN.md): config.toml, metrics.jsonl, events.jsonl, status.json,
control.jsonl, samples/, checkpoints/, worker.log. This module never imports
torch, so viewers stay light.

Writers append whole lines in one `write`; readers keep a torn last line
until its newline arrives. NaN and infinity are written as null.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ganterm.errors import UserError

ACTIVE_STATES = ("starting", "running", "paused", "stalled")  # stalled: derived, never written
FINAL_STATES = ("finished", "stopped", "failed")
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_STALE_SECONDS = 20.0
DEFAULT_ROOT = Path("runs")
GRID_KEY = "ganterm-grid"  # PNG text of a sample grid: "images columns rows cell_width cell_height"
GRID_PADDING = 2


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def control(self) -> Path:
        return self.path / "control.jsonl"

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def log(self) -> Path:
        return self.path / "worker.log"

    @property
    def lock(self) -> Path:
        return self.path / "worker.lock"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def sample_files(self) -> list[Path]:
        return sorted(self.samples.glob("step_*.png"))

    def exists(self) -> bool:
        return any(p.exists() for p in (self.metrics, self.status, self.config, self.checkpoints))


def float32_precision(value: float) -> float:
    """A statistic computed in float32, without the float64 digits it never had: shorter lines, faster viewers."""
    return float(f"{value:.7g}")


def dumps(record: dict[str, Any]) -> bytes:
    """One JSON line; orjson writes NaN and infinity as null, as the contract asks."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class JsonlWriter:
    """Appends records to a JSONL file, each batch in a single write call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        data = b"".join(dumps(r) for r in records)
        if data:
            _write_all(self._fd, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record; O_APPEND keeps concurrent writers' lines whole."""
    with JsonlWriter(path) as writer:
        writer.write([record])


def record_event(run: RunDir, kind: str, step: int, **fields: Any) -> None:
    append_jsonl(run.events, {"t": time.time(), "step": step, "kind": kind, **fields})


class LineTail:
    """Reads the complete lines appended to a file since the last call.

    A torn last line is kept back until its newline arrives. If the file is
    replaced or shrinks (a resumed run rewinds its metrics), `reset` turns
    true and reading restarts from the top, so the caller can drop what it had.
    """

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = path
        self.offset = 0
        self.reset = False
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        if from_end and path.exists():
            stat = path.stat()
            self.offset, self._identity = stat.st_size, (stat.st_dev, stat.st_ino)

    def start_at(self, offset: int) -> None:
        """Read on from `offset` (a line start), as if everything before it had been read."""
        stat = self.path.stat()
        self.offset, self._identity = offset, (stat.st_dev, stat.st_ino)

    def read_lines(self, max_bytes: int | None = None) -> list[bytes]:
        self.reset = False
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is not None and (identity != self._identity or stat.st_size < self.offset):
            self.offset, self._partial, self.reset = 0, b"", True
        self._identity = identity
        if stat.st_size <= self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(max_bytes if max_bytes is not None else -1)
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return lines

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk not yet read; lets a reader tell history from live tail."""
        try:
            return max(0, self.path.stat().st_size - self.offset)
        except FileNotFoundError:
            return 0


class TextTail(LineTail):
    """New lines of a text file (the worker log)."""

    def read(self, max_bytes: int | None = None) -> list[str]:
        return [line.decode(errors="replace") for line in self.read_lines(max_bytes)]


class JsonlTail(LineTail):
    """New records of a JSONL file; a line that does not parse is skipped and counted."""

    def __init__(self, path: Path, from_end: bool = False) -> None:
        super().__init__(path, from_end)
        self.bad_lines = 0

    def read(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        records = []
        for line in self.read_lines(max_bytes):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                self.bad_lines += 1
        return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return JsonlTail(path).read()


def last_record(path: Path, window: int = 65536, having: str | None = None) -> dict[str, Any] | None:
    """The last complete record (holding the key `having`, if given), read from the file's end."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - window))
            tail = handle.read()
    except FileNotFoundError:
        return None
    for line in reversed(tail.split(b"\n")[1 if size > window else 0 :]):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and (having is None or having in record):
            return record
    return None


def write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Replace `path` whole: readers see the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_status(run: RunDir, status: dict[str, Any]) -> None:
    write_atomic(run.status, orjson.dumps(status, option=orjson.OPT_INDENT_2))


def read_status(run: RunDir) -> dict[str, Any] | None:
    """The status, or None when missing; a corrupted file is reported, not raised."""
    try:
        raw = run.status.read_bytes()
    except FileNotFoundError:
        return None
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError:
        warn(f"{run.status} is not valid JSON; ignoring it")
        return None
    if not isinstance(status, dict):
        warn(f"{run.status} does not hold an object; ignoring it")
        return None
    return status


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(text).name or text).strip("-").lower() or "run"


def new_run_name(data_name: str, root: Path) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{_slug(data_name)}-{stamp}"
    name, n = base, 2
    while (root / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def list_runs(root: Path) -> list[RunDir]:
    """Runs under `root`, oldest first by when their config (or metrics) was written."""
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and RunDir(p).exists()]
    return sorted(runs, key=_started)


def _started(run: RunDir) -> tuple[float, str]:
    for path in (run.config, run.metrics, run.status):
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_mtime, run.name
    return 0.0, run.name


def resolve_run(argument: str | None, root: Path = DEFAULT_ROOT) -> RunDir:
    """A run from a name under `root`, a path, or None for the newest run."""
    if argument is None:
        runs = list_runs(root)
        if not runs:
            raise UserError(f"there are no runs under {root}/ yet; start one with: ganterm train")
        return runs[-1]
    for candidate in (Path(argument).expanduser(), root / argument):
        if candidate.is_dir() and RunDir(candidate).exists():
            return RunDir(candidate)
    known = [r.name for r in list_runs(root)]
    hint = f" (runs there: {', '.join(known[-5:])})" if known else ""
    raise UserError(f"no run named {argument!r} under {root}/ and no run directory at that path{hint}")


class StatusBoard:
    """Owns status.json for a worker: state changes, step, and a heartbeat thread.

    The heartbeat keeps beating while the loop is paused or busy writing a
    checkpoint, so viewers can tell a slow worker from a dead one (`lost`).
    """

    def __init__(self, run: RunDir, **fields: Any) -> None:
        import threading

        self.run = run
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"pid": os.getpid(), "host": this_host(), **fields}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self.error: OSError | None = None

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
            with self._lock:
                try:
                    self._write()
                except OSError as error:  # a full disk must not kill the thread; the loop reports it
                    self.error = error

    def _write(self) -> None:
        self._status["heartbeat"] = time.time()
        write_status(self.run, self._status)


class RunLocked(UserError):
    """Another live worker is training this run directory."""


def acquire_lock(run: RunDir) -> int:
    """Hold an exclusive lock on the run for this process's lifetime; returns its fd.

    The kernel drops a flock when its holder dies, even by kill -9, so a
    crashed worker never leaves a run locked.
    """
    import fcntl

    fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"run {run.name!r} is already being trained by process {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def rewind(run: RunDir, step: int) -> None:
    """Forget what came after `step` (resuming from a checkpoint at `step`).

    Metrics rows past it are cut off, so a resumed run logs each step once;
    sample grids past it are deleted, since they show weights that no longer
    exist. Events stay: they are the run's history, crash included.
    """
    if run.metrics.exists():
        cut = _first_offset_after(run.metrics, step)
        if cut is not None:
            os.truncate(run.metrics, cut)
    for path in run.sample_files():
        if int(path.stem.removeprefix("step_")) > step:
            path.unlink(missing_ok=True)


def _first_offset_after(path: Path, step: int) -> int | None:
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                record = orjson.loads(line)
                later = isinstance(record, dict) and int(record.get("step", 0)) > step
            except (orjson.JSONDecodeError, TypeError, ValueError):
                later = not line.endswith(b"\n")  # a torn last line goes too
            if later:
                return offset
            offset += len(line)
    return None
