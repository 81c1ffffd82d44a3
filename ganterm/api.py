"""Feed the dashboard from your own training loop.

    import ganterm

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

The run directory is written by the same `Recorder` as ganterm's own worker.
"""

from __future__ import annotations

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
from ganterm.health import HealthMonitor
from ganterm.notify import Notifier
from ganterm.run.control import Command
from ganterm.run.jsonl import float32_precision
from ganterm.run.layout import RunDir, check_run_name, claim_new_run, new_run_name
from ganterm.run.recorder import Recorder, ReplicaRecorder, Row
from ganterm.run.status import this_host
from ganterm.run.values import loggable_step, loggable_values, step_number

PAUSE_POLL_SECONDS = 0.2
NO_CALLBACK = "this run is fed by its own training loop, which registered no on_{cmd} callback"


class Run:
    """A run directory written by a training loop that is not ganterm's.

    `on_checkpoint(step)` saves the user's checkpoint and may return its path;
    `on_sample(step)` returns a batch of images (N×C×H×W in [-1, 1]) for the
    sample grid. Without them, `checkpoint` and `sample` commands are refused.
    `images_per_step` (the batch of one step, over all processes) gives the dashboard img/s and its
    images-seen x axis. `notify` (an http(s) URL) is told of every alert and of the run's end, as
    `ganterm train --notify` is.
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
    ) -> None:
        root = Path(root)
        if notify is not None and not (isinstance(notify, str) and notify.startswith(("http://", "https://"))):
            raise UserError(f"notify must be an http:// or https:// URL (or None to send nothing), not {notify!r}")
        for what, count, least in (
            ("total", total, 0),
            ("images_per_step", images_per_step, 0),
            ("flush_every", flush_every, 1),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < least:
                raise UserError(f"{what} must be a whole number, {least} or more; got {count!r}")
        self.rank, self.world_size = _rank_and_world_size()
        if self.world_size > 1 and name is None:
            raise UserError("a run trained by several processes needs a name, the same on every rank")
        if name is not None:
            check_run_name(name)
        self.dir = RunDir(root / (name or new_run_name("run", root)))
        if self.rank == 0:
            claimed = claim_new_run(root, name, "run")
            if claimed is None:
                raise UserError(f"run {name!r} already exists under {root}/; pick another name or leave it out")
            self.dir = claimed
        self.flush_every = flush_every
        self._images_per_step = images_per_step
        self.step = 0
        self.stop_requested = False
        self.paused = False
        self._on_checkpoint, self._on_sample = on_checkpoint, on_sample
        self._stop_command: Command | None = None
        self._pending: list[Row] = []
        self._control_size = -1
        controls = ["stop", "pause", "unpause"]
        controls += ["checkpoint"] * (on_checkpoint is not None) + ["snapshot"] * (on_sample is not None)
        self._recorder: Recorder | ReplicaRecorder
        if self.rank > 0:  # in a user's torchrun job only rank 0 writes; the others record nothing
            self._recorder = ReplicaRecorder(self.dir, log=lambda message: None)
            self._control_size = 0
        else:
            self._recorder = Recorder(
                self.dir,
                log=lambda message: None,  # the user's loop has its own output; the record is in the files
                health=HealthMonitor(health or HealthConfig(), own_loop=True),
                total=total,
                device="your training loop",
                started=time.time(),
                loop="own",
                controls=controls,
                resumable=False,
                world_size=self.world_size,
                **({"images_per_step": images_per_step} if images_per_step else {}),
            )
        if notify and self.rank == 0:
            # failures are said once, on stderr: this loop's own output is the user's to keep
            self._recorder.notices = Notifier(
                notify, self.dir.name, this_host(), lambda line: print(line, file=sys.stderr)
            )
        self._recorder.collect = self._take_rows
        self._recorder.set_state("running", 0)

    def log(self, step: Any, /, **values: Any) -> None:
        """One step's numbers; written with the next flush. Waits here while the run is paused.

        A value that is no number, or under a reserved name, raises here, naming it; the rest of the row is kept.
        """
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
        elif name == "checkpoint" and self._on_checkpoint is not None:
            save = self._on_checkpoint
            self._recorder.checkpoint(self.step, lambda: _optional_path(save(self.step)), command)
        elif name == "snapshot" and self._on_sample is not None:
            self._save_grid(self.step, self._on_sample(self.step), None, command)
        else:
            self._recorder.refuse(command, NO_CALLBACK.format(cmd=name))

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
        """Flush, and leave the state a viewer should see: finished, stopped or failed."""
        try:
            self._recorder.flush()
        finally:
            if isinstance(error, KeyboardInterrupt) or (error is None and self.stop_requested):
                self._recorder.set_state("stopped", self.step, self._stop_command)
            elif error is not None:
                self._recorder.set_state("failed", self.step, error=f"{type(error).__name__}: {error}")
            else:
                self._recorder.set_state("finished", self.step)
            self._recorder.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close(error)


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
    return Path(result) if result else None


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
