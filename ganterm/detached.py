"""Processes that outlive the command that starts them: the worker (or the supervisor of several), the lookout.

Each starts in its own session and is handed to init, so closing the terminal
or the SSH connection never reaches it, and it never lingers as our zombie.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ganterm.errors import UserError
from ganterm.run.layout import RunDir
from ganterm.run.status import write_status
from ganterm.scale import Scale, worker_log


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
