"""The worker process: trains one run directory, detached from any terminal.

`ganterm.detached.start_worker` starts `python -m ganterm.training.worker RUN
[--resume CKPT]` in its own session, so a closed terminal or dropped SSH
connection (SIGHUP) does not reach it; its stdout and stderr go to
`worker.log`. The worker holds the
run's lock, keeps `status.json` beating, turns SIGTERM/SIGINT and
`control.jsonl` commands into loop commands, and on any failure records the
error (traceback in `worker.log`) after saving what can be saved.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from ganterm import logline
from ganterm.config import load_config
from ganterm.errors import UserError
from ganterm.health import HealthMonitor
from ganterm.notify import Notifier
from ganterm.run.checkpoints import newest_intact
from ganterm.run.control import COMMANDS
from ganterm.run.files import write_atomic
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder, ReplicaRecorder
from ganterm.run.rewind import abandon_after, rewind
from ganterm.run.status import this_host
from ganterm.training.checkpoint import Checkpoint, load_checkpoint
from ganterm.training.data import STACKED_NAME, cache_root, load_dataset
from ganterm.training.distributed import Group
from ganterm.training.loop import Schedule, fit, write_checkpoint
from ganterm.training.quality import QualityProbe
from ganterm.training.threads import choose_threads, forward_flops
from ganterm.training.trainer import Trainer, complete_config, pick_device


def log(message: str) -> None:
    """A worker.log line; a rank other than 0 names itself, since all ranks of a node share the log."""
    rank = os.environ.get("RANK", "0")
    logline.log(message, speaker=f"rank {rank}" if rank != "0" else "")


def describe_os_error(error: OSError, run: RunDir) -> str:
    """One sentence for a disk problem, naming the file and the way back."""
    where = f" {error.filename}" if error.filename else " the run directory"
    if error.errno == errno.ENOSPC:
        return f"no space left on the disk while writing{where}; free some, then: ganterm train --resume {run.name}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where} ({error.strerror}); check the folder's permissions"
    return f"cannot write{where}: {error.strerror or error}"


def run_worker(run: RunDir, resume: Path | None, config_path: Path | None = None, or_older: bool = False) -> int:
    """Train `run` to its configured total; the exit code says how it ended.

    Under torchrun this is one rank of a group: rank 0 records the run, the others only train.
    `or_older`: `resume` is the run's newest checkpoint, found by name; if it turns out
    damaged, the newest intact one is used instead (with a warning naming both).
    """
    recorder: Recorder | ReplicaRecorder
    if int(os.environ.get("RANK", "0")) == 0:
        recorder = Recorder(
            run,
            log=log,
            state="starting",
            started=time.time(),
            loop="ganterm",
            controls=list(COMMANDS),
            resumable=True,
            **_supervisor(),
        )
    else:
        recorder = ReplicaRecorder(run, log=log)
    with _signals_to(recorder):
        trainer = schedule = None
        try:
            trainer, schedule = _prepare(run, resume, recorder, config_path or run.config, or_older)
            state = fit(trainer, recorder, schedule)
            return 0 if state in ("finished", "stopped") else 1
        except UserError as error:
            return _fail(recorder, str(error), trainer, schedule, exit_code=2)
        except OSError as error:
            log(traceback.format_exc())
            return _fail(recorder, describe_os_error(error, run), trainer, schedule)
        except Exception as error:  # a bug or a fault: the traceback goes to worker.log
            log(traceback.format_exc())
            return _fail(recorder, f"{type(error).__name__}: {error} (traceback in worker.log)", trainer, schedule)
        finally:
            recorder.close()
            if trainer is not None:
                trainer.group.close()


def _supervisor() -> dict[str, int]:
    """Under torchrun, the process that started the ranks (ganterm's supervisor): a resume waits for its end."""
    return {"supervisor": os.getppid()} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}


@contextlib.contextmanager
def _signals_to(recorder: Recorder | ReplicaRecorder) -> Iterator[None]:
    """SIGTERM and SIGINT become a stop command, SIGHUP is ignored; the caller's handlers come back after."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, recorder.inbox.on_signal)
    signal.signal(signal.SIGINT, recorder.inbox.on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def _prepare(
    run: RunDir, resume: Path | None, recorder: Recorder | ReplicaRecorder, config_path: Path, or_older: bool = False
) -> tuple[Trainer, Schedule]:
    """Load config, data and models; join the group, if any; restore the checkpoint when resuming."""
    main = isinstance(recorder, Recorder)
    config = load_config(config_path)
    if main and config.notify.url:  # first, so that a failure to load the data is told too
        recorder.notices = Notifier(config.notify.url, run.name, this_host(), log)
    device = pick_device(config.train.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    group = Group.from_env(device.type)
    log(f"loading data {config.data.name!r}")
    dataset = load_dataset(config, progress=log)
    complete_config(config, dataset)
    if main:
        write_atomic(run.config, config.to_toml().encode())  # viewers may be reading it: old or new, never half
    trainer = Trainer(config, dataset, device, group)
    total = trainer.total_steps
    threads, why = choose_threads(config.train.threads, device, lambda: forward_flops(
        trainer.generator, trainer.discriminator, config.model.z_dim, trainer.local_batch))  # fmt: skip
    torch.set_num_threads(threads)
    log(f"{threads} CPU thread(s): {why}")
    schedule = Schedule(total)
    recorder.health = HealthMonitor(
        config.health,
        classes=dataset.num_classes if dataset.is_image else 0,
        toy=not dataset.is_image or dataset.name == STACKED_NAME,  # judged by their modes, not their spread
        family=trainer.family,
    )
    if config.quality.every and main:
        schedule.quality = QualityProbe.prepare(
            dataset, config.quality.samples, config.train.seed, cache_root(config), log, config_path
        )
        if schedule.quality.left_out:
            log(f"note: {schedule.quality.left_out}")
        recorder.describe(waiting_for=schedule.quality.waiting_for)
    if resume is not None:
        resume, checkpoint = _load_resume(run, resume, or_older)
        trainer.restore(checkpoint, resume)
        schedule.last_checkpoint = checkpoint.step
        if main:
            rewind(run, checkpoint.step)
            abandoned = abandon_after(run, checkpoint.step)
            if abandoned is not None:
                moved = ", ".join(sorted(path.name for path in abandoned.iterdir()))
                log(
                    f"rolled back to step {checkpoint.step}: the later checkpoints ({moved}) were moved aside "
                    f"to {abandoned}; latest now points at step {checkpoint.step}"
                )
        log(f"resumed from {resume} at step {checkpoint.step}")
        if checkpoint.world_size != group.world_size:
            log(
                f"it was trained by {checkpoint.world_size} process(es) and goes on with {group.world_size}: "
                "it continues, but not bit for bit as it would have"
            )
    elif main:
        rewind(run, 0)  # a run restarted before its first checkpoint replays from the start
    recorder.step = trainer.step
    recorder.describe(
        total=total,
        device=describe_device(device),
        data=config.data.name,
        batch_size=config.train.batch_size,
        images_per_step=trainer.images_per_step,
        world_size=group.world_size,
        loss=config.loss.kind,  # how viewers read D's outputs (ganterm.families)
    )
    ranks = f" x {group.world_size} processes" if group.distributed else ""
    log(f"training on {describe_device(device)}{ranks}: {len(dataset):,} samples, steps {trainer.step} -> {total}")
    return trainer, schedule


def _load_resume(run: RunDir, resume: Path, or_older: bool) -> tuple[Path, Checkpoint]:
    """The checkpoint to go on from; with `or_older`, the newest of the run that loads whole."""
    if not or_older:
        return resume, load_checkpoint(resume)
    loaded: dict[Path, Checkpoint] = {}

    def check(path: Path) -> None:
        loaded[path] = load_checkpoint(path)

    path = newest_intact(run, check, warn=log)
    if path is None:  # the file the launcher found is gone: say so in its own words
        return resume, load_checkpoint(resume)
    return path, loaded[path]


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def _fail(
    recorder: Recorder | ReplicaRecorder,
    message: str,
    trainer: Trainer | None,
    schedule: Schedule | None,
    exit_code: int = 1,
) -> int:
    """Record the failure; first save the weights if they are sound and newer than the last checkpoint."""
    log(f"failed: {message}")
    step = trainer.step if trainer is not None else 0
    # in a group, saving takes every rank, and the failure may have taken one: the last checkpoint stands
    sound = trainer is not None and not trainer.group.distributed and trainer.bad_streak == 0
    if sound and schedule is not None and trainer.step > max(schedule.last_checkpoint, 0):
        try:
            write_checkpoint(trainer, recorder, schedule)
            log(f"saved a checkpoint at step {trainer.step} before stopping")
        except Exception as error:  # the original failure matters more than this one
            log(f"could not save a checkpoint after the failure: {error}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return exit_code  # torchrun ends the group; the supervisor names the rank that failed first, and why
    try:
        recorder.set_state("failed", step, error=message, exit_code=exit_code)
    except OSError as error:
        log(f"could not record the failure in events.jsonl: {error}")
        try:  # status.json alone may still fit where an event did not; if not, viewers see `lost` once we exit
            recorder.status.update(state="failed", step=step, error=message, exit_code=exit_code)
        except OSError as again:
            log(f"could not record the failure in status.json: {again}")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganterm.training.worker", description="Train one run directory.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=None, help="the run's config.toml unless given")
    parser.add_argument(
        "--or-older", action="store_true", help="--resume names the run's newest checkpoint; fall back if damaged"
    )
    args = parser.parse_args(argv)
    try:
        return run_worker(RunDir(args.run), args.resume, args.config, args.or_older)
    except UserError as error:  # e.g. the run is locked by another worker
        log(f"error: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
