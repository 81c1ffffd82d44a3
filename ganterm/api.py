"""Feed the dashboard from your own training loop.

    import ganterm

    with ganterm.Run("my-gan", total=20_000) as run:
        for step in range(1, 20_001):
            ...
            run.log(step, loss_d=loss_d, loss_g=loss_g, d_x=d_x, d_g_z1=d_g_z, my_metric=value)
            if step % 500 == 0:
                run.images(step, fake)  # N×C×H×W in [-1, 1]
            if run.stop_requested:      # `x` in the dashboard, or `ganterm stop my-gan`
                break

`ganterm watch my-gan` then shows it like any run: the statistics ganterm's
own loop logs get their dedicated panels, any other number a panel of its
own, and the same health checks raise the same alerts. Values may be plain
numbers or tensors (a step too); rows are buffered and written once per
`flush_every` steps, and the tensors of all buffered rows come off the device
together, in one transfer per flush, as in ganterm's own loop.

The run directory is written by the same `Recorder` as ganterm's own worker.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ganterm.config import HealthConfig
from ganterm.errors import UserError
from ganterm.health import HealthMonitor
from ganterm.run.control import Command
from ganterm.run.jsonl import float32_precision
from ganterm.run.layout import RunDir, new_run_name
from ganterm.run.recorder import Recorder, Row

REFUSED = "this run is fed by its own training loop, which only stops on request"


class Run:
    """A run directory written by a training loop that is not ganterm's."""

    def __init__(
        self,
        name: str | None = None,
        *,
        root: str | Path = "runs",
        total: int = 0,
        flush_every: int = 10,
        health: HealthConfig | None = None,
    ) -> None:
        root = Path(root)
        self.dir = RunDir(root / (name or new_run_name("run", root)))
        if self.dir.exists():
            raise UserError(f"run {self.dir.name!r} already exists under {root}/; pick another name")
        self.dir.path.mkdir(parents=True)
        self.flush_every = flush_every
        self.step = 0
        self.stop_requested = False
        self._stop_command: Command | None = None
        self._pending: list[Row] = []
        self._recorder = Recorder(
            self.dir,
            log=lambda message: None,  # the user's loop has its own output; the record is in the files
            health=HealthMonitor(health or HealthConfig()),
            total=total,
            device="your training loop",
            started=time.time(),
        )
        self._recorder.collect = self._take_rows
        self._recorder.set_state("running", 0)

    def log(self, step: Any, **values: Any) -> None:
        """One step's numbers; written with the next flush."""
        self._pending.append({"step": step, "t": round(time.time(), 3), **values})
        if len(self._pending) >= self.flush_every:
            self.flush()

    def images(self, step: int, images: Any, nrow: int | None = None) -> Path:
        """Save a batch of images (N×C×H×W tensor in [-1, 1]) as the run's sample grid for `step`."""
        from ganterm.training.sample import image_grid, save_png

        def save() -> Path:
            path = self.dir.sample_path(int(step))
            save_png(image_grid(images.detach().float().cpu(), nrow), path)
            return path

        return self._recorder.sample(int(step), save)

    def flush(self) -> None:
        """Write the buffered rows, check their health, and read the viewers' commands."""
        self._recorder.flush()
        for command in self._recorder.commands():
            self._obey(command)

    def _take_rows(self) -> list[Row]:
        rows, self._pending = _plain_rows(self._pending), []
        if rows:
            self.step = int(rows[-1]["step"])
        return rows

    def _obey(self, command: Command) -> None:
        if command["cmd"] == "stop":
            self.stop_requested = True
            self._stop_command = self._stop_command or command
            return
        self._recorder.refuse(command, REFUSED)

    def close(self, error: BaseException | None = None) -> None:
        """Flush, and leave the state a viewer should see: finished, stopped or failed."""
        try:
            self.flush()
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
    """Steps are whole numbers; statistics keep float32's digits, as in ganterm's own rows."""
    if key == "step":
        return int(value)
    if key == "t" or value is None or isinstance(value, (int, str)):
        return value
    return float32_precision(float(value))
