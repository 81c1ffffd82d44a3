"""Starting a run: its directory, its detached worker, and the wait until it trains.

Torch-free on purpose: the process that runs `ganterm train` goes on to be a
viewer, and viewers stay light.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganterm.config import Config, frozen_on_resume, load_config
from ganterm.errors import ConfigError, UserError
from ganterm.logline import LOG_TIMESTAMP
from ganterm.notify import CLOSE_WAIT_SECONDS
from ganterm.run.checkpoints import newest_intact, read_resumable, step_files
from ganterm.run.jsonl import TextTail
from ganterm.run.layout import RunDir, check_run_name, claim_new_run, resolve_run
from ganterm.run.lock import lock_holder, one_starter
from ganterm.run.status import (
    ACTIVE_STATES,
    effective_state,
    pid_alive,
    read_status,
    stalled_reason,
    started_before,
    this_host,
    write_status,
)

START_TIMEOUT_SECONDS = 120.0  # without any sign of life from the worker
ENDING_WORKER_WAIT_S = 2 * CLOSE_WAIT_SECONDS  # a worker's last notices get that long, then it exits


def create_run(config: Config, name: str | None, root: Path) -> RunDir:
    """A fresh run directory holding the resolved config."""
    if name is not None:
        check_run_name(name, "--name")
    try:
        run = claim_new_run(root, name, config.data.name)
        if run is None:
            raise UserError(f"run {name!r} already exists under {root}/; pick another --name or --resume {name}")
        run.config.write_text(config.to_toml(), encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot create the run directory under {str(root)!r}: {error.strerror or error}") from None
    return run


def resume_plan(
    argument: str, root: Path, config_path: Path | None, values: dict, overrides: list[str]
) -> tuple[RunDir | None, Path | None, Config]:
    """Which run and checkpoint to continue, and the config to continue with.

    The checkpoint's config is the base; what the user sets on top may change
    the schedule, not the data or the architecture. A checkpoint file outside
    any run directory starts a new run (returned as None) that continues its
    step numbering. A run that died before its first checkpoint starts over
    from step 0 (returned checkpoint None) with its saved config. A run's
    newest checkpoint with a damaged header is passed over for the newest
    intact one; the worker, which loads the tensors, checks them too.
    """
    given = Path(argument).expanduser()
    if given.is_file():
        checkpoint = given
        owner = RunDir(given.resolve().parent.parent)
        run = owner if given.resolve().parent.name == "checkpoints" and owner.exists() else None
    else:
        run = resolve_run(argument, root)
        if (read_status(run) or {}).get("loop") == "own":
            raise UserError(
                f"run {run.name!r} is fed by its own training loop, which ganterm train cannot continue; "
                f"run that loop again with ganterm.Run({run.name!r}, resume=True)"
            )
        checkpoint = newest_intact(run)
        if checkpoint is None:
            return run, None, load_config(config_path, overrides, values, base=load_config(run.config))
    saved, step = read_resumable(checkpoint)
    config = load_config(config_path, overrides, values, base=saved)
    frozen_on_resume(saved, config)
    if config.train.epochs <= 0 and config.train.steps <= step:
        raise ConfigError(
            f"the checkpoint is already at step {step} and train.steps is {config.train.steps}; "
            f"pass --steps N with N above {step} to train on (--steps counts from the start of the run)"
        )
    return run, checkpoint, config


@dataclass(frozen=True)
class Plan:
    """What `ganterm train` will do: continue `run` (from `checkpoint`), or start a new run, with `config`."""

    config: Config
    run: RunDir | None = None
    checkpoint: Path | None = None
    or_older: bool = False  # the checkpoint is the run's newest, found by name: the worker may fall back


@dataclass(frozen=True)
class Started:
    run: RunDir
    pid: int
    new: bool
    log_offset: int = 0  # where this worker's lines begin in worker.log


def plan_run(config_path: Path | None, values: dict, overrides: list[str], resume: str | None, root: Path) -> Plan:
    if resume is None:
        return Plan(load_config(config_path, overrides, values))
    run, checkpoint, config = resume_plan(resume, root, config_path, values, overrides)
    return Plan(config, run, checkpoint, or_older=not Path(resume).expanduser().is_file())


def start_run(plan: Plan, name: str | None, root: Path, scale: Scale, say: Callable[[str], None] = print) -> Started:
    """Make or reopen the run directory and start its worker detached; `say` tells of a wait on the way.

    A machine other than the first of a multi-machine run writes only into
    `nodes/<rank>/` of the run: its config and its log.
    """
    try:
        return _start_run(plan, name, root, scale, say)
    except OSError as error:  # someone else's shared runs, a full disk: one sentence
        where = error.filename or root
        raise UserError(f"cannot start the run: cannot write {str(where)!r} ({error.strerror or error})") from None


def _start_run(plan: Plan, name: str | None, root: Path, scale: Scale, say: Callable[[str], None]) -> Started:
    if scale.nnodes > 1 and plan.run is None and name is None:  # a resumed run lends its own name
        raise UserError("--nnodes above 1 needs --name, the same on every machine, so they train one run")
    if scale.node_rank > 0:
        run = plan.run or RunDir(root / check_run_name(str(name), "--name"))
        folder = node_folder(run, scale)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.toml").write_text(plan.config.to_toml(), encoding="utf-8")
        offset = _log_end(run, scale)
        pid = start_worker(run, plan.checkpoint, scale, folder / "config.toml", plan.or_older)
        return Started(run, pid, new=False, log_offset=offset)
    run = plan.run or create_run(plan.config, name, root)
    with one_starter(run):  # a second `--resume` of this run waits here, then finds this worker starting
        ensure_idle(run, say=say)  # a new run too: a `--resume` of it may have come before this lock
        if plan.run is not None:
            run.config.write_text(plan.config.to_toml(), encoding="utf-8")
        offset = _log_end(run, scale)
        pid = start_worker(run, plan.checkpoint, scale, or_older=plan.or_older)
    if plan.config.notify.url:
        start_lookout(run)
    return Started(run, pid, new=plan.run is None, log_offset=offset)


def _log_end(run: RunDir, scale: Scale) -> int:
    """Where the next worker's lines will begin in this machine's log: earlier workers' lines stay behind."""
    log = worker_log(run, scale)
    return log.stat().st_size if log.exists() else 0


def scale_from_options(
    nproc_per_node: str, nnodes: int, node_rank: int, rdzv_endpoint: str | None, rdzv_id: str | None, name: str | None
) -> Scale:
    """torchrun's options, checked: one sentence for each way they can be wrong."""
    if nproc_per_node == "auto":
        processes = "gpu"  # counted by torchrun where the workers start, so this viewer never loads torch
    elif nproc_per_node.isdigit() and int(nproc_per_node) >= 1:
        processes = str(int(nproc_per_node))
    else:
        raise UserError(f"--nproc-per-node {nproc_per_node!r} must be a whole number of at least 1, or auto")
    if node_rank >= nnodes:
        raise UserError(f"--node-rank {node_rank} must be below --nnodes {nnodes} (ranks count from 0)")
    if nnodes > 1 and (not rdzv_endpoint or ":" not in rdzv_endpoint):
        raise UserError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT, the same on every machine")
    return Scale(processes, nnodes, node_rank, rdzv_endpoint or "", rdzv_id or name or "")


def follow_node(started: Started, scale: Scale, on_log: Callable[[str], None]) -> int:
    """On a machine other than the first: pass its log on until its ranks end; the exit code says how."""
    on_log(
        f"this is node {scale.node_rank} of {scale.nnodes}: it trains, node 0 records the run, "
        f"and this machine keeps only its config and log, in {node_folder(started.run, scale)}/"
    )
    log = TextTail(worker_log(started.run, scale))
    log.start_at(started.log_offset)
    while True:
        gone = not pid_alive(started.pid)  # read once more after the supervisor ended: its last line
        for line in log.read():
            on_log(line)
            if f"node {scale.node_rank}: all ranks ended" in line:
                return 0
            if f"node {scale.node_rank}: failed:" in line:
                return 1
        if gone:
            on_log(
                f"the supervisor of node {scale.node_rank} ended without a word; see {worker_log(started.run, scale)}"
            )
            return 1
        time.sleep(0.2)


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


@dataclass(frozen=True)
class Scale:
    """How many processes train the run, with torchrun's names and meanings."""

    nproc_per_node: str = "1"  # a number, or "gpu" for one per visible GPU, as torchrun counts them
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    rdzv_timeout: int = 300

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node != "1" or self.nnodes > 1


def node_folder(run: RunDir, scale: Scale) -> Path:
    """Where a node other than the first keeps its config and log, inside the run's folder."""
    return run.path / "nodes" / str(scale.node_rank)


def worker_log(run: RunDir, scale: Scale) -> Path:
    return run.log if scale.node_rank == 0 else node_folder(run, scale) / "worker.log"


def worker_command(run: RunDir, resume: Path | None, scale: Scale, config: Path, or_older: bool = False) -> list[str]:
    """The worker itself for one process; torchrun, through ganterm's supervisor, for several."""
    if not scale.distributed:
        command = [sys.executable, "-m", "ganterm.training.worker", str(run.path)]
    else:
        command = [sys.executable, "-m", "ganterm.training.supervisor", str(run.path)]
        command += ["--log", str(worker_log(run, scale)), "--nproc-per-node", scale.nproc_per_node]
        command += ["--nnodes", str(scale.nnodes), "--node-rank", str(scale.node_rank)]
        command += ["--rdzv-endpoint", scale.rdzv_endpoint, "--rdzv-id", scale.rdzv_id or run.name]
        command += ["--rdzv-timeout", str(scale.rdzv_timeout)]
    command += ["--config", str(config)]
    if resume is not None:
        command += ["--resume", str(resume)]
        if or_older:
            command += ["--or-older"]
    return command


def start_worker(
    run: RunDir, resume: Path | None = None, scale: Scale = Scale(), config: Path | None = None, or_older: bool = False
) -> int:
    """Start the worker (or the supervisor of several) detached: its own session, and not our child.

    Forking once more and letting the middle process exit hands the worker to
    init, so it outlives this terminal and never lingers as our zombie (a
    zombie still answers kill(pid, 0), which would hide a dead worker).
    """
    command = worker_command(run, resume, scale, config or run.config, or_older)
    log = worker_log(run, scale)
    pid = spawn_detached(command, log)
    if pid is None:
        raise UserError(f"could not start the worker process; see {log}")
    if scale.node_rank == 0:
        write_status(run, {"state": "starting", "pid": pid, "host": os.uname().nodename, "heartbeat": time.time()})
    return pid


def start_lookout(run: RunDir) -> int | None:
    """Beside a worker whose run has a notify.url: the process that tells the URL when the worker stalls or dies."""
    return spawn_detached([sys.executable, "-m", "ganterm.lookout", str(run.path)], run.log)


def spawn_detached(command: list[str], log_path: Path) -> int | None:
    """Start `command` in its own session, not as our child, its output appended to `log_path`; its pid."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(read_end)
            os.setsid()
            with open(log_path, "ab") as log:
                child = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            os.write(write_end, str(child.pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    with os.fdopen(read_end, "rb") as pipe:
        pid_text = pipe.read().decode()
    return int(pid_text) if pid_text else None


def wait_until_started(run: RunDir, on_log: Callable[[str], None] = lambda line: None, log_from: int = 0) -> dict:
    """Wait while the worker loads; pass on what it logs from `log_from` on. Returns the status it reached.

    A resumed run's log holds its earlier workers' lines: `Started.log_offset`
    skips them. Tracebacks are left in worker.log: a failed start ends in one
    sentence, which names the log when there is more to read.
    """
    log = TextTail(run.log)
    if log_from and run.log.exists():
        log.start_at(log_from)
    last_sign = time.monotonic()
    in_traceback = False

    def pass_on() -> None:
        nonlocal in_traceback
        for line in log.read():
            stamped = LOG_TIMESTAMP.match(line)
            if stamped:  # a traceback's own lines carry no timestamp; the next logged line ends it
                in_traceback = line[stamped.end() :].startswith("Traceback")
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


def discard_if_unborn(run: RunDir) -> bool:
    """Remove a new run that failed before training a step: nothing of value is in it."""
    status = read_status(run) or {}
    if status.get("step", 0) == 0 and not step_files(run.checkpoints):
        shutil.rmtree(run.path, ignore_errors=True)
        return True
    return False
