"""Feed the dashboard from your own training loop.

    import ganterm

    run = ganterm.Run("my-gan", total=steps, config=args)  # args: a dict, a dataclass or argparse's Namespace
    for step in run.steps(steps, start=run.start_step + 1):
        ...  # your D and G updates
        run.log(step, loss_d=loss_d, loss_g=loss_g, d_x=d_x, d_g_z1=d_g_z)
    run.finish()  # or let the script end: an uncaught exception leaves the run failed, with its reason

or, with the run's end tied to a block:

    with ganterm.Run("my-gan", total=epochs * len(loader)) as run:
        for epoch in range(epochs):
            for real, _ in loader:
                ...  # your D and G updates
                step += 1
                run.log(step, loss_d=loss_d, loss_g=loss_g, d_x=d_x, d_g_z1=d_g_z)
                if run.should_stop():  # `x` in the dashboard, or `ganterm stop my-gan`
                    break
            if run.should_stop():
                break

`ganterm watch my-gan` then shows it like any run: the statistics ganterm's
own loop logs get their dedicated panels, any other number a panel of its
own, and the same health checks raise the same alerts. Values may be plain
numbers or tensors (a step too); rows are buffered and written once per
`flush_every` steps, and the tensors of all buffered rows come off the device
together, in one transfer per flush, as in ganterm's own loop.

Every control command works on such a run or is refused at once with the
reason: `stop` sets `stop_requested`; `pause` makes the next `log` call wait
until `unpause` (the heartbeat goes on, so the run reads paused, not lost);
`checkpoint` and `sample` call `on_checkpoint(step)` and `on_sample(step)`
when given. Commands are looked for on every `log` call at the cost of one
`stat` of the control file, so a stop is seen within one step.

`Run(name, resume=True)` continues a run the script ran before (`"allow"`:
continue it or start it): rows past the step the loop restarts from (`step=`,
else the newest checkpoint it saved through `on_checkpoint`) are cut back, as
`ganterm train --resume` does. What the loop prints also goes to the run's
worker.log, the dashboard's log panel (`capture_output=False` keeps it out).

The run directory is written by the same `Recorder` as ganterm's own worker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ganterm.config import HealthConfig
from ganterm.errors import UserError
from ganterm.families import DEFAULT_FAMILY, family_named
from ganterm.health import HealthMonitor
from ganterm.notify import Notifier
from ganterm.run.checkpoints import loop_checkpoints
from ganterm.run.control import Command
from ganterm.run.jsonl import float32_precision, latest_values
from ganterm.run.layout import RunDir, check_run_name, claim_new_run, new_run_name
from ganterm.run.recorder import Recorder, ReplicaRecorder, Row
from ganterm.run.rewind import rewind
from ganterm.run.settings import plain_config, write_loop_config
from ganterm.run.status import read_status, this_host
from ganterm.run.values import loggable_step, loggable_values, step_number
from ganterm.tee import ConsoleCopy, LogFile
from ganterm.urls import shown_url, url_problem

PAUSE_POLL_SECONDS = 0.2
NO_CALLBACK = "this run is fed by its own training loop, which registered no on_{cmd} callback"
RESUME_MODES: dict[object, str] = {False: "never", "never": "never", True: "must", "must": "must", "allow": "allow"}


class Run:
    """A run directory written by a training loop that is not ganterm's.

    `on_checkpoint(step)` saves the user's checkpoint and may return its path;
    `on_sample(step)` returns a batch of images (N×C×H×W in [-1, 1]) for the
    sample grid. Without them, `checkpoint` and `sample` commands are refused.
    `images_per_step` (the batch of one step, over all processes) gives the dashboard img/s and its
    images-seen x axis. `notify` (an http(s) URL) is told of every alert and of the run's end, as
    `ganterm train --notify` is.

    Without a `with` block the run ends at `finish()`, or when the script ends: finished, or failed
    with the exception that ended it, or stopped by Ctrl-C, as the `with` form leaves it.
    `resume` (True or "must": the run must exist; "allow": continue it or start it) continues a run:
    `start_step` is the step the loop restarts from, `step` if given, else that of the newest
    checkpoint `on_checkpoint` saved (`resumed_from`, its path), else 0; rows past it are cut back.
    `config` (a dict, a dataclass or an argparse Namespace) is kept with the run, for the dashboard,
    `ganterm runs`, comparisons and exports. `capture_output` copies the loop's stdout and stderr into
    the run's log (the dashboard's log panel); the console still gets all of it.
    `loss` (a family, `probability`, `least-squares`, `margin`, `critic`, `relativistic`, or a loss
    name such as `wgan-gp`) says how to read the `d_x` and `d_g_z1` the loop logs: sigmoid means for
    probability (the default), D's raw outputs otherwise; the panels and alerts follow it
    (docs/losses.md).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        root: str | Path = "runs",
        total: int = 0,
        images_per_step: int = 0,
        flush_every: int = 10,
        health: HealthConfig | None = None,
        on_checkpoint: Callable[[int], str | Path | None] | None = None,
        on_sample: Callable[[int], Any] | None = None,
        notify: str | None = None,
        config: Any = None,
        resume: bool | str = False,
        step: int | None = None,
        capture_output: bool = True,
        loss: str = DEFAULT_FAMILY,
    ) -> None:
        root = Path(root)
        if notify is not None:
            problem = url_problem(notify) if isinstance(notify, str) else "is not a string"
            if problem:
                shown = shown_url(notify) if isinstance(notify, str) else notify
                raise UserError(f"notify {shown!r} {problem}; give an http:// or https:// URL, or None to send nothing")
        for what, count, least in (
            ("total", total, 0),
            ("images_per_step", images_per_step, 0),
            ("flush_every", flush_every, 1),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < least:
                raise UserError(f"{what} must be a whole number, {least} or more; got {count!r}")
        resume_mode = _resume_mode(resume)
        if resume_mode != "never" and name is None:
            raise UserError(f"resume={resume!r} needs the name of the run to continue, as the first argument of Run")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise UserError(f"step must be the whole step the loop restarts from, 0 or more; got {step!r}")
        family = family_named(loss)
        settings = None if config is None else plain_config(config)
        self.rank, self.world_size = _rank_and_world_size()
        if self.world_size > 1 and name is None:
            raise UserError("a run trained by several processes needs a name, the same on every rank")
        if name is not None:
            check_run_name(name)
        self.dir = RunDir(root / (name or new_run_name("run", root)))
        self.resumed = self._claim(root, name, resume_mode)
        self.start_step, self.resumed_from = self._restart_point(step)
        self.flush_every = flush_every
        self._images_per_step = images_per_step
        self.step = self.start_step
        self.stop_requested = False
        self.paused = False
        self._on_checkpoint, self._on_sample = on_checkpoint, on_sample
        self._stop_command: Command | None = None
        self._pending: list[Row] = []
        self._control_size = -1
        self._closed = False
        self._log: LogFile | None = None
        self._console: ConsoleCopy | None = None
        self._error_before = getattr(sys, "last_value", None)  # an interactive session's old error is not ours
        controls = ["stop", "pause", "unpause"]
        controls += ["checkpoint"] * (on_checkpoint is not None) + ["snapshot"] * (on_sample is not None)
        self._recorder: Recorder | ReplicaRecorder
        if self.rank > 0:  # in a user's torchrun job only rank 0 writes; the others record nothing
            self._recorder = ReplicaRecorder(self.dir, log=lambda message: None)
            self._control_size = 0
        else:
            self._recorder = Recorder(
                self.dir,
                log=self._note,  # to worker.log only: the user's console is theirs
                health=HealthMonitor(health or HealthConfig(), own_loop=True, family=family),
                total=total,
                device="your training loop",
                started=time.time(),
                loop="own",
                controls=controls,
                resumable=False,
                world_size=self.world_size,
                loss=loss,
                **({"images_per_step": images_per_step} if images_per_step else {}),
            )
        try:
            if notify and self.rank == 0:
                # failures are said once, on stderr: this loop's own output is the user's to keep
                self._recorder.notices = Notifier(
                    notify, self.dir.name, this_host(), lambda line: print(line, file=sys.stderr)
                )
            self._recorder.collect = self._take_rows
            if self.rank == 0:
                self._start_record(settings, capture_output)
            self._recorder.set_state("running", self.start_step, total=total)
        except BaseException:  # the run is held from here: let go of it, or a retry in this process finds it locked
            self._stop_copying()
            self._recorder.close()
            raise
        atexit.register(self._close_at_exit)

    def log(self, step: Any, /, **values: Any) -> None:
        """One step's numbers; written with the next flush. Waits here while the run is paused.

        A value that is no number, or under a reserved name, raises here, naming it; the rest of the row is kept.
        """
        if self._closed:
            raise UserError(
                f"run {self.dir.name!r} has ended (finish() or its with block); "
                f"continue it with ganterm.Run({self.dir.name!r}, resume=True)"
            )
        row = {"step": loggable_step(step), "t": round(time.time(), 3)}
        kept, refused = loggable_values(values, computed=("img_per_s",) if self._images_per_step else ())
        if kept or not values:  # a row of nothing but its step, when that was all it was given
            self._pending.append(row | kept)
        if len(self._pending) >= self.flush_every:
            self.flush()
        else:
            self._poll()
        if refused:
            first, *others = refused.values()
            raise UserError(first + (f" ({len(others)} more value(s) of this row left out too)" if others else ""))

    def should_stop(self) -> bool:
        """Whether a viewer asked the loop to stop (checked now, cheaply): break out of every loop level.

        In a job of several processes every rank must call it at the same steps: rank 0's answer is
        broadcast, so all ranks stop at the same step.
        """
        self._poll()
        if self.world_size > 1:
            self.stop_requested = _broadcast_flag(self.stop_requested)
        return self.stop_requested

    def steps(self, total: int, start: int = 1) -> Iterator[int]:
        """`start` … `total`, ending early when a stop is asked for: `for step in run.steps(20_000):`."""
        for step in range(start, total + 1):
            if self.should_stop():
                return
            yield step

    def images(self, step: int, images: Any, nrow: int | None = None) -> Path:
        """Save a batch of images (N×C×H×W tensor in [-1, 1]) as the run's sample grid for `step`."""
        return self._save_grid(step_number(step), images, nrow)

    def checkpoint(self, step: int | None = None) -> Path | None:
        """Save a checkpoint now through `on_checkpoint` (rows first) and record it, so `resume=True` finds it."""
        if self._on_checkpoint is None:
            raise UserError("run.checkpoint() needs on_checkpoint=, the function that saves your checkpoint")
        save = self._on_checkpoint
        self._recorder.flush()
        at = self.step if step is None else step_number(step)
        return self._recorder.checkpoint(at, lambda: _optional_path(save(at)))

    def finish(self) -> None:
        """End the run: flushed, finished (stopped, if a viewer asked for it), the console as it was."""
        self.close()

    def flush(self) -> None:
        """Write the buffered rows, check their health, and carry out the viewers' commands."""
        self._recorder.flush()
        self._obey_commands()

    def _poll(self) -> None:
        """Read commands only when the control file changed: a stat per call, no parsing."""
        if self.rank > 0:
            return
        try:
            size = os.stat(self.dir.control).st_size
        except FileNotFoundError:
            size = 0
        if size != self._control_size:
            self._control_size = size
            self._obey_commands()

    def _obey_commands(self) -> None:
        for command in self._recorder.commands():
            self._obey(command)
        while self.paused and not self.stop_requested:
            time.sleep(PAUSE_POLL_SECONDS)
            for command in self._recorder.commands():
                self._obey(command)

    def _take_rows(self) -> list[Row]:
        rows, self._pending = _plain_rows(self._pending), []
        if rows:
            with contextlib.suppress(UserError):  # a tensor step read back as no whole number: the recorder says so
                self.step = step_number(rows[-1]["step"])
        return rows

    def _obey(self, command: Command) -> None:
        name = command["cmd"]
        if name == "stop":
            self.stop_requested = True
            self._stop_command = self._stop_command or command
        elif name in ("pause", "unpause") and self.paused == (name == "pause"):
            self._recorder.event("log", self.step, command, message=f"already {'paused' if self.paused else 'running'}")
        elif name == "pause":
            self._recorder.flush()
            self.paused = True
            self._recorder.set_state("paused", self.step, command)
        elif name == "unpause":
            self.paused = False
            self._recorder.restart_clock()
            self._recorder.set_state("running", self.step, command)
        elif name in ("checkpoint", "snapshot") and (self._on_checkpoint, self._on_sample)[name == "snapshot"]:
            try:
                self._call_back(name, command)
            except Exception as error:  # the loop's own callback failed: a viewer's command must not end training
                reason = f"{'on_checkpoint' if name == 'checkpoint' else 'on_sample'} failed: {_reason(error)}"
                self._recorder.refuse(command, reason)
                self._note(f"{name!r} refused: {reason}")
        else:
            self._recorder.refuse(command, NO_CALLBACK.format(cmd=name))

    def _call_back(self, name: str, command: Command) -> None:
        """A viewer's checkpoint or snapshot, through the loop's callback."""
        if name == "checkpoint":
            save = self._on_checkpoint
            assert save is not None
            self._recorder.checkpoint(self.step, lambda: _optional_path(save(self.step)), command)
        else:
            assert self._on_sample is not None
            self._save_grid(self.step, self._on_sample(self.step), None, command)

    def _save_grid(self, step: int, images: Any, nrow: int | None, command: Command | None = None) -> Path:
        from ganterm.training.sample import image_grid, save_png

        if getattr(images, "ndim", None) != 4 or not hasattr(images, "detach"):  # on_sample's return value too
            shape = f" of shape {tuple(images.shape)}" if hasattr(images, "shape") else ""
            raise UserError(f"images must be a tensor of N×C×H×W images in [-1, 1]; got {type(images).__name__}{shape}")

        def save() -> Path:
            path = self.dir.sample_path(step)
            save_png(image_grid(images.detach().float().cpu(), nrow), path)
            return path

        return self._recorder.sample(step, save, command)

    def close(self, error: BaseException | None = None) -> None:
        """Flush, and leave the state a viewer should see: finished, stopped or failed. Once: later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        try:
            self._close(error)
        finally:
            self._stop_copying()

    def _close(self, error: BaseException | None) -> None:
        try:
            self._recorder.flush()
        finally:
            if isinstance(error, KeyboardInterrupt) or (error is None and self.stop_requested):
                self._recorder.set_state("stopped", self.step, self._stop_command)
            elif error is not None:
                self._recorder.set_state("failed", self.step, error=_reason(error))
            else:
                self._recorder.set_state("finished", self.step)
            self._recorder.close()

    def _close_at_exit(self) -> None:
        """The script ended without `finish`: failed by the exception that ended it, else as `finish` leaves it."""
        error = getattr(sys, "last_value", None)  # set by Python for the uncaught exception it printed
        self.close(None if error is self._error_before else error)

    def _claim(self, root: Path, name: str | None, mode: str) -> bool:
        """Make the run's folder, or find the one to continue; whether the run is resumed."""
        exists = self.dir.exists()
        if self.rank > 0:
            return exists and mode != "never"
        if exists and mode == "never":
            raise UserError(
                f"run {self.dir.name!r} already exists under {root}/; continue it with "
                f"ganterm.Run({self.dir.name!r}, resume=True), or pick another name or leave it out"
            )
        # ganterm train's runs have its config.toml from their first moment, before any status
        if exists and (self.dir.config.exists() or (read_status(self.dir) or {}).get("loop") == "ganterm"):
            raise UserError(
                f"run {self.dir.name!r} under {root}/ was trained by ganterm train; continue it with "
                f"ganterm train --resume {self.dir.name}, or give this loop a name of its own"
            )
        if not exists and mode == "must":
            raise UserError(
                f"there is no run {self.dir.name!r} under {root}/ to resume; "
                'start it with resume="allow" (continue it or start it) or without resume'
            )
        if exists:
            return True
        # checked and claimed in one step: of two starts racing for the name, the loser is told it is taken
        claimed = claim_new_run(root, name, "run")
        if claimed is None:
            raise UserError(
                f"run {name!r} already exists under {root}/ (another start claimed it just now); "
                "pick another name or leave it out"
            )
        self.dir = claimed
        return False

    def _restart_point(self, step: int | None) -> tuple[int, Path | None]:
        """The step the loop restarts from, and the checkpoint file at it when ganterm knows one."""
        if step is not None or not self.resumed:
            return step or 0, None
        saved = [(at, path) for at, path in loop_checkpoints(self.dir) if path is None or path.exists()]
        if saved:
            return saved[-1]
        logged = latest_values(self.dir.metrics, ("step",)).get("step")
        if self.rank == 0 and logged:  # restarting from 0 would cut every row: the loop's own state says where
            raise UserError(
                f"run {self.dir.name!r} has rows up to step {logged} and no checkpoint saved through on_checkpoint; "
                f"give Run(..., resume=True, step=N) the step your loop restarts from (rows after it are cut back)"
            )
        return 0, None

    def _start_record(self, settings: dict[str, Any] | None, capture_output: bool) -> None:
        """Rank 0, with the run held: cut a resumed run back, keep the config, open the log, copy the console."""
        if self.resumed:
            rewind(self.dir, self.start_step)
        if settings is not None:
            write_loop_config(self.dir, settings)
        self._log = LogFile(self.dir.log)
        if self.resumed:
            self._note(f"resumed at step {self.start_step}: rows after it are cut back")
        if capture_output:
            self._console = ConsoleCopy(self._log)

    def _note(self, message: str) -> None:
        if self._log is not None:
            self._log.line(message)

    def _stop_copying(self) -> None:
        if self._console is not None:
            self._console.restore()
            self._console = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close(error)


def _resume_mode(resume: object) -> str:
    mode = RESUME_MODES.get(resume) if isinstance(resume, (bool, str)) else None
    if mode is None:
        raise UserError(f'resume must be True (or "must"), "allow" or False; got {resume!r}')
    return mode


def _reason(error: BaseException) -> str:
    """The exception in one line, as the header and `ganterm runs` show a failure."""
    try:
        lines = str(error).strip().splitlines()
    except Exception:  # an exception whose own text fails must still end the run as failed
        lines = []
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _rank_and_world_size() -> tuple[int, int]:
    """From torch.distributed when the user's job set it up, else from torchrun's environment."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _broadcast_flag(flag: bool) -> bool:
    """Rank 0's flag on every rank; without an initialised process group, the flag as it is."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return flag
    shared = [flag]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])


def _optional_path(result: str | Path | None) -> Path | None:
    """Absolute, so the event names the file even when the loop keeps its checkpoints outside the run."""
    return Path(result).absolute() if result else None


def _plain_rows(rows: list[Row]) -> list[Row]:
    """Rows of plain numbers: every tensor of every row read back in one transfer, detached first."""
    rows = [dict(row) for row in rows]
    by_device: dict[Any, list[tuple[int, str]]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if hasattr(value, "detach"):
                by_device.setdefault(value.device, []).append((i, key))
    if by_device:
        import torch

        for places in by_device.values():  # one device, in practice: one transfer
            stacked = torch.stack([rows[i][key].detach().float().reshape(()) for i, key in places])
            for (i, key), value in zip(places, stacked.cpu().tolist(), strict=True):
                rows[i][key] = value
    for row in rows:
        for key, value in row.items():
            row[key] = _number(key, value)
    return rows


def _number(key: str, value: Any) -> Any:
    """Statistics keep float32's digits, as in ganterm's own rows; the recorder checks the step."""
    if key in ("step", "t") or not isinstance(value, float):
        return value
    return float32_precision(value)
