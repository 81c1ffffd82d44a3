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
own, and the same health checks raise the same alerts. Values may be floats
or tensors; rows are buffered and written once per `flush_every` steps, so a
tensor is read back from the device once per flush, not once per step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ganterm.config import HealthConfig
from ganterm.errors import UserError
from ganterm.health import HealthMonitor
from ganterm.run.jsonl import JsonlTail, JsonlWriter, float32_precision, record_event
from ganterm.run.layout import RunDir, new_run_name
from ganterm.run.lock import acquire_lock
from ganterm.run.status import StatusBoard


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
        self._lock = acquire_lock(self.dir)
        self.flush_every = flush_every
        self.step = 0
        self.stop_requested = False
        self._pending: list[dict[str, Any]] = []
        self._metrics = JsonlWriter(self.dir.metrics)
        self._control = JsonlTail(self.dir.control, from_end=True)
        self._health = HealthMonitor(health or HealthConfig())
        self._status = StatusBoard(self.dir, total=total, device="your training loop", started=time.time())
        self._status.update(state="running", step=0)
        self._status.start()
        record_event(self.dir, "status", 0, state="running")

    def log(self, step: int, **values: Any) -> None:
        """One step's numbers; written with the next flush."""
        self.step = step
        self._pending.append({"step": step, "t": round(time.time(), 3), **values})
        if len(self._pending) >= self.flush_every:
            self.flush()

    def images(self, step: int, images: Any, nrow: int | None = None) -> Path:
        """Save a batch of images (N×C×H×W tensor in [-1, 1]) as the run's sample grid for `step`."""
        from ganterm.training.sample import image_grid, save_png

        path = self.dir.sample_path(step)
        save_png(image_grid(images.detach().float().cpu(), nrow), path)
        record_event(self.dir, "sample", step, path=str(path.relative_to(self.dir.path)))
        return path

    def flush(self) -> None:
        """Write the buffered rows, check their health, and read the viewers' commands."""
        rows = [{key: value if key in ("step", "t") else _number(value) for key, value in row.items()}
                for row in self._pending]  # fmt: skip
        self._pending = []
        if rows:
            self._metrics.write(rows)
            for alert in self._health.update(rows):
                record_event(self.dir, "alert", alert.step, **alert.event())
            self._status.update(step=self.step)
        for command in self._control.read():
            self._obey(command)

    def _obey(self, command: dict[str, Any]) -> None:
        if command.get("cmd") == "stop":
            self.stop_requested = True
            return
        record_event(self.dir, "log", self.step, message=f"{command.get('cmd')!r} is not available: "
                     "this run is fed by its own training loop, which only stops on request")  # fmt: skip

    def close(self, error: BaseException | None = None) -> None:
        """Flush, and leave the state a viewer should see: finished, stopped or failed."""
        try:
            self.flush()
        finally:
            if isinstance(error, KeyboardInterrupt) or (error is None and self.stop_requested):
                fields: dict[str, Any] = {"state": "stopped"}
            elif error is not None:
                fields = {"state": "failed", "error": f"{type(error).__name__}: {error}"}
            else:
                fields = {"state": "finished"}
            self._status.update(step=self.step, **fields)
            record_event(self.dir, "status", self.step, **fields)
            self._status.close()
            self._metrics.close()
            os.close(self._lock)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close(error)


def _number(value: Any) -> Any:
    """Tensors and numpy scalars become plain floats, at float32 precision like ganterm's own rows."""
    if isinstance(value, (int, str)) or value is None:
        return value
    return float32_precision(float(value))
