"""Starting a run: its directory, its detached worker, and the wait until it trains.

Torch-free on purpose: the process that runs `ganterm train` goes on to be a
viewer, and viewers stay light.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ganterm.config import Config, frozen_on_resume, load_config
from ganterm.errors import ConfigError, UserError
from ganterm.run.checkpoints import latest_step_file, read_config, step_files
from ganterm.run.jsonl import TextTail
from ganterm.run.layout import RunDir, new_run_name, resolve_run
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status, stalled_reason, write_status

LOG_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # how worker.log lines begin
START_TIMEOUT_SECONDS = 120.0  # without any sign of life from the worker


def create_run(config: Config, name: str | None, root: Path) -> RunDir:
    """A fresh run directory holding the resolved config."""
    if name is not None and (not name or "/" in name or name in (".", "..")):
        raise UserError(f"--name {name!r} must be a plain folder name, without '/'")
    try:
        root.mkdir(parents=True, exist_ok=True)
        name = name or new_run_name(config.data.name, root)
        run = RunDir(root / name)
        if run.path.exists():
            raise UserError(f"run {name!r} already exists under {root}/; pick another --name or --resume {name}")
        run.path.mkdir()
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
    from step 0 (returned checkpoint None) with its saved config.
    """
    given = Path(argument).expanduser()
    if given.is_file():
        checkpoint = given
        owner = RunDir(given.resolve().parent.parent)
        run = owner if given.resolve().parent.name == "checkpoints" and owner.exists() else None
    else:
        run = resolve_run(argument, root)
        checkpoint = latest_step_file(run)
        if checkpoint is None:
            return run, None, load_config(config_path, overrides, values, base=load_config(run.config))
    saved, step = read_config(checkpoint)
    config = load_config(config_path, overrides, values, base=saved)
    frozen_on_resume(saved, config)
    if config.train.epochs <= 0 and config.train.steps <= step:
        raise ConfigError(
            f"the checkpoint is already at step {step} and train.steps is {config.train.steps}; "
            f"pass --steps N with N above {step} to train on (--steps counts from the start of the run)"
        )
    return run, checkpoint, config


def ensure_idle(run: RunDir) -> None:
    status = read_status(run) or {}
    state = effective_state(status)
    if state == "stalled":
        raise UserError(f"run {run.name!r} is stalled: {stalled_reason(status)}")
    if state in ACTIVE_STATES:
        raise UserError(f"run {run.name!r} is {state}; stop it first with: ganterm stop {run.name}")


def start_worker(run: RunDir, resume: Path | None = None) -> int:
    """Start the worker detached: its own session, and not our child.

    Forking once more and letting the middle process exit hands the worker to
    init, so it outlives this terminal and never lingers as our zombie (a
    zombie still answers kill(pid, 0), which would hide a dead worker).
    """
    command = [sys.executable, "-m", "ganterm.training.worker", str(run.path)]
    if resume is not None:
        command += ["--resume", str(resume)]
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(read_end)
            os.setsid()
            with open(run.log, "ab") as log:
                worker = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            os.write(write_end, str(worker.pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    with os.fdopen(read_end, "rb") as pipe:
        pid_text = pipe.read().decode()
    if not pid_text:
        raise UserError(f"could not start the worker process; see {run.log}")
    pid = int(pid_text)
    write_status(run, {"state": "starting", "pid": pid, "host": os.uname().nodename, "heartbeat": time.time()})
    return pid


def wait_until_started(run: RunDir, on_log: Callable[[str], None] = lambda line: None) -> dict:
    """Wait while the worker loads; pass its log lines on. Returns the status it reached.

    Tracebacks are left in worker.log: a failed start ends in one sentence, which
    names the log when there is more to read.
    """
    log = TextTail(run.log)
    last_sign = time.monotonic()
    in_traceback = False
    while True:
        for line in log.read():
            stamped = LOG_TIMESTAMP.match(line)
            if stamped:  # a traceback's own lines carry no timestamp; the next logged line ends it
                in_traceback = line[stamped.end() :].startswith("Traceback")
            if not in_traceback:
                on_log(line)
        status = read_status(run) or {}
        state = effective_state(status)
        if state not in ("starting", "unknown", "stalled"):  # stalled: still importing torch on a slow disk
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
