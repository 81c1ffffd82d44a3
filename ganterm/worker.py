"""The worker process: trains one run directory, detached from any terminal.

`spawn_worker` starts `python -m ganterm.worker RUN [--resume CKPT]` in its own
session, so a closed terminal or dropped SSH connection (SIGHUP) does not
reach it; its stdout and stderr go to `worker.log`. The worker holds the
run's lock, keeps `status.json` beating, turns SIGTERM/SIGINT and
`control.jsonl` commands into loop commands, and on any failure records the
error (traceback in `worker.log`) after saving what can be saved.

This module's top level does not import torch: the CLI imports `spawn_worker`.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ganterm.errors import UserError
from ganterm.rundir import JsonlTail, RunDir, StatusBoard, acquire_lock, record_event, rewind

COMMANDS = ("pause", "resume", "stop", "checkpoint", "sample")


def spawn_worker(run: RunDir, resume: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start the worker for `run` in a new session; returns its pid."""
    command = [sys.executable, "-m", "ganterm.worker", str(run.path)]
    if resume is not None:
        command += ["--resume", str(resume)]
    with open(run.log, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    return process.pid


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


class Commands:
    """Control commands from `control.jsonl` and from signals, in arrival order."""

    def __init__(self, run: RunDir) -> None:
        # only commands written after the worker started count: old ones were for an earlier worker
        self._tail = JsonlTail(run.control, from_end=True)
        self._signalled: list[dict[str, Any]] = []

    def on_signal(self, number: int, _frame: object) -> None:
        self._signalled.append({"cmd": "stop", "signal": signal.Signals(number).name})

    def __call__(self) -> list[dict[str, Any]]:
        found, self._signalled = self._signalled, []
        before = self._tail.bad_lines
        for record in self._tail.read():
            if record.get("cmd") in COMMANDS:
                found.append(record)
            else:
                log(f"warning: ignoring unknown control command {record!r}")
        if self._tail.bad_lines > before:
            log(f"warning: skipped {self._tail.bad_lines - before} unreadable line(s) in control.jsonl")
        return found


def describe_os_error(error: OSError, run: RunDir) -> str:
    """One sentence for a disk problem, naming the file and the way back."""
    where = f" {error.filename}" if error.filename else " the run directory"
    if error.errno == errno.ENOSPC:
        return f"no space left on the disk while writing{where}; free some, then: ganterm train --resume {run.name}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where} ({error.strerror}); check the folder's permissions"
    return f"cannot write{where}: {error.strerror or error}"


def run_worker(run: RunDir, resume: Path | None) -> int:
    """Train `run` to its configured total; the exit code says how it ended."""
    commands = Commands(run)
    lock = acquire_lock(run)
    status = StatusBoard(run, state="starting", started=time.time())
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, commands.on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    status.update()
    status.start()
    trainer = loop = None
    try:
        trainer, loop = _prepare(run, resume, status, commands)
        from ganterm.train import fit

        state = fit(trainer, loop)
        return 0 if state in ("finished", "stopped") else 1
    except UserError as error:
        return _fail(run, status, str(error), trainer, loop, exit_code=2)
    except OSError as error:
        log(traceback.format_exc())
        return _fail(run, status, describe_os_error(error, run), trainer, loop)
    except Exception as error:  # a bug or a fault: the traceback goes to worker.log
        log(traceback.format_exc())
        return _fail(run, status, f"{type(error).__name__}: {error} (traceback in worker.log)", trainer, loop)
    finally:
        status.close()
        os.close(lock)


def _prepare(run: RunDir, resume: Path | None, status: StatusBoard, commands: Commands):
    """Load config, data and models; restore the checkpoint when resuming."""
    from ganterm.checkpoint import load_checkpoint
    from ganterm.config import load_config, resolve_steps
    from ganterm.data import cache_root, load_dataset
    from ganterm.health import HealthMonitor
    from ganterm.quality import QualityProbe
    from ganterm.train import Loop, Trainer, complete_config, pick_device

    config = load_config(run.config)
    device = pick_device(config.train.device)
    log(f"loading data {config.data.name!r}")
    dataset = load_dataset(config, progress=log)
    complete_config(config, dataset)
    run.config.write_text(config.to_toml(), encoding="utf-8")
    total = resolve_steps(config, len(dataset))
    trainer = Trainer(config, dataset, device)
    loop = Loop(run, status, total, poll=commands, log=log)
    loop.health = HealthMonitor(config.health, classes=dataset.num_classes if dataset.is_image else 0)
    if config.quality.every:
        loop.quality = QualityProbe.prepare(dataset, config.quality.samples, config.train.seed, cache_root(config), log)
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        trainer.restore(checkpoint, resume)
        loop.last_checkpoint = checkpoint.step
        rewind(run, checkpoint.step)
        log(f"resumed from {resume} at step {checkpoint.step}")
    else:
        rewind(run, 0)  # a run restarted before its first checkpoint replays from the start
    status.update(
        total=total, device=describe_device(device), data=config.data.name, batch_size=config.train.batch_size
    )
    log(f"training on {describe_device(device)}: {len(dataset):,} samples, steps {trainer.step} -> {total}")
    return trainer, loop


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def _fail(run: RunDir, status: StatusBoard, message: str, trainer, loop, exit_code: int = 1) -> int:
    """Record the failure; first save the weights if they are sound and newer than the last checkpoint."""
    log(f"failed: {message}")
    step = trainer.step if trainer is not None else 0
    if trainer is not None and loop is not None and trainer.step > max(loop.last_checkpoint, 0):
        try:
            from ganterm.train import write_checkpoint

            if trainer.bad_streak == 0:
                write_checkpoint(trainer, loop)
                log(f"saved a checkpoint at step {trainer.step} before stopping")
        except Exception as error:  # the original failure matters more than this one
            log(f"could not save a checkpoint after the failure: {error}")
    try:
        status.update(state="failed", step=step, error=message, exit_code=exit_code)
        record_event(run, "status", step, state="failed", error=message)
    except OSError as error:
        log(f"could not record the failure in status.json: {error}")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganterm.worker", description="Train one run directory.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--resume", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        return run_worker(RunDir(args.run), args.resume)
    except UserError as error:  # e.g. the run is locked by another worker
        log(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
