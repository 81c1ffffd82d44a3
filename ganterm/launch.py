"""Starting a run: the plan (new, or resumed from which checkpoint), its directory, and its detached worker.

The processes it starts are in `detached`, the waits in `waiting`, the
processes-and-machines options in `scale`.

Torch-free on purpose: the process that runs `ganterm train` goes on to be a
viewer, and viewers stay light.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ganterm.config import Config, frozen_on_resume, load_config
from ganterm.detached import start_lookout, start_worker
from ganterm.errors import ConfigError, UserError
from ganterm.run.checkpoints import newest_intact, read_resumable, step_files
from ganterm.run.files import write_atomic
from ganterm.run.layout import RunDir, check_run_name, claim_new_run, resolve_run
from ganterm.run.lock import one_starter
from ganterm.run.status import (
    read_status,
)
from ganterm.scale import Scale, node_folder, worker_log
from ganterm.waiting import ensure_idle


def create_run(config: Config, name: str | None, root: Path) -> RunDir:
    """A fresh run directory holding the resolved config."""
    if name is not None:
        check_run_name(name, "--name")
    try:
        run = claim_new_run(root, name, config.data.name)
        if run is None:
            raise UserError(f"run {name!r} already exists under {root}/; pick another --name or --resume {name}")
        write_atomic(run.config, config.to_toml().encode())
    except OSError as error:
        raise UserError(f"cannot create the run directory under {str(root)!r}: {error.strerror or error}") from None
    return run


def resume_plan(
    argument: str, root: Path, config_path: Path | None, values: dict, overrides: list[str]
) -> tuple[RunDir | None, Path | None, Config]:
    """Which run and checkpoint to continue, and the config to continue with.

    The checkpoint's config is the base, with the run's notify.url; what the
    user sets on top may change the schedule, not the data or the
    architecture. A checkpoint file outside any run directory starts a new run
    (returned as None) that continues its step numbering. A run that died
    before its first checkpoint starts over from step 0 (returned checkpoint
    None) with its saved config. A run's newest checkpoint with a damaged
    header is passed over for the newest intact one; the worker, which loads
    the tensors, checks them too.
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
    config = load_config(config_path, overrides, values, base=_with_secrets_of(run, saved))
    frozen_on_resume(saved, config)
    if config.train.epochs <= 0 and config.train.steps <= step:
        raise ConfigError(
            f"the checkpoint is already at step {step} and train.steps is {config.train.steps}; "
            f"pass --steps N with N above {step} to train on (--steps counts from the start of the run)"
        )
    return run, checkpoint, config


def _with_secrets_of(run: RunDir | None, saved: Config) -> Config:
    """A checkpoint's config with the run's notify.url from its config.toml, since checkpoints keep no secret.

    A checkpoint file from outside any run starts a run that notifies only where the user says; so does a run
    whose config.toml a kill cut short, which the checkpoint's config can still resume.
    """
    if run is None:
        return saved
    try:
        return replace(saved, notify=load_config(run.config).notify)
    except ConfigError:
        return saved


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
        write_atomic(folder / "config.toml", plan.config.to_toml().encode())
        offset = _log_end(run, scale)
        pid = start_worker(run, plan.checkpoint, scale, folder / "config.toml", plan.or_older)
        return Started(run, pid, new=False, log_offset=offset)
    run = plan.run or create_run(plan.config, name, root)
    with one_starter(run):  # a second `--resume` of this run waits here, then finds this worker starting
        ensure_idle(run, say=say)  # a new run too: a `--resume` of it may have come before this lock
        if plan.run is not None:
            write_atomic(run.config, plan.config.to_toml().encode())  # viewers may be reading it
        offset = _log_end(run, scale)
        pid = start_worker(run, plan.checkpoint, scale, or_older=plan.or_older)
    if plan.config.notify.url:
        start_lookout(run)
    return Started(run, pid, new=plan.run is None, log_offset=offset)


def _log_end(run: RunDir, scale: Scale) -> int:
    """Where the next worker's lines will begin in this machine's log: earlier workers' lines stay behind."""
    log = worker_log(run, scale)
    return log.stat().st_size if log.exists() else 0


def discard_if_unborn(run: RunDir) -> bool:
    """Remove a new run that failed before training a step: nothing of value is in it."""
    status = read_status(run) or {}
    if status.get("step", 0) == 0 and not step_files(run.checkpoints):
        shutil.rmtree(run.path, ignore_errors=True)
        return True
    return False
