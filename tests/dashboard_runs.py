"""Run directories made by hand, in every state, for the dashboard tests (no torch, no worker)."""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import orjson
from PIL import Image

from ganterm.dashboard.app import Dashboard
from ganterm.dashboard.plots import MetricPlot
from ganterm.run.layout import RunDir
from ganterm.run.status import write_status

START = 1_790_000_000.0  # a fixed clock, so snapshots do not change from run to run


def metric_rows(first: int, last: int) -> list[dict]:
    """A healthy-looking run: losses settling, D(x) above D(G(z)), one quality row every 50 steps."""
    rows = []
    for step in range(first, last + 1):
        wobble = math.sin(step / 7.0)
        rows.append({
            "step": step, "t": START + step * 0.1, "epoch": step / 80,
            "loss_d": 1.4 * math.exp(-step / 80) + 0.5 + 0.1 * wobble,
            "loss_d_real": 0.6 * math.exp(-step / 80) + 0.2 + 0.05 * wobble,
            "loss_d_fake": 0.8 * math.exp(-step / 80) + 0.3 + 0.05 * wobble,
            "loss_g": 0.8 + 0.6 * (1 - math.exp(-step / 60)) + 0.15 * wobble,
            "d_x": 0.55 + 0.25 * (1 - math.exp(-step / 50)) + 0.03 * wobble,
            "d_g_z1": 0.45 - 0.25 * (1 - math.exp(-step / 50)) + 0.03 * wobble,
            "d_g_z2": 0.43 - 0.25 * (1 - math.exp(-step / 50)) + 0.03 * wobble,
            "grad_norm_d": 4 + wobble, "grad_norm_g": 2 + 0.5 * wobble,
            "lr_d": 2e-4, "lr_g": 2e-4, "img_per_s": 600.0,
        })  # fmt: skip
        if step % 50 == 0:
            rows.append({"step": step, "t": START + step * 0.1, "fd_classifier": 300 * math.exp(-step / 100) + 20})
    return rows


def append_metrics(run: RunDir, rows: list[dict]) -> None:
    with open(run.metrics, "ab") as handle:
        handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def write_samples(run: RunDir, steps: list[int]) -> None:
    run.samples.mkdir(parents=True, exist_ok=True)
    for index, step in enumerate(steps):
        shade = 60 + 60 * index
        Image.new("RGB", (62, 62), (shade, 255 - shade, 128)).save(run.sample_path(step))


def dead_pid() -> int:
    """The pid of a process that has ended: a worker that is gone."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def make_run(root: Path, name: str, state: str, steps: int = 200, total: int = 400) -> RunDir:
    """A run directory as the worker leaves it in `state` ("external": metrics only)."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    append_metrics(run, metric_rows(1, steps))
    if state == "external":
        return run
    events = [
        {"t": START + 5, "step": 50, "kind": "alert", "check": "d_overpowering", "severity": "warning",
         "message": "D is overpowering G: D(x) 0.97, D(G(z)) 0.02; try a lower D learning rate."},
        {"t": START + 9, "step": 90, "kind": "alert", "check": "nonfinite", "severity": "error",
         "message": "loss_d was NaN at step 90; the step was skipped."},
    ]  # fmt: skip
    with open(run.events, "wb") as handle:
        handle.write(b"".join(orjson.dumps(event) + b"\n" for event in events))
    write_samples(run, [100, 200])
    run.log.write_text("".join(f"step {s}: loss_d 0.5\n" for s in range(0, steps + 1, 50)), encoding="utf-8")
    live = state in ("running", "paused")
    status = {
        "pid": os.getpid() if live else dead_pid(),
        "host": os.uname().nodename,
        "state": "running" if state == "lost" else state,
        "step": steps,
        "total": total,
        "device": "cpu",
        "started": START,
        "heartbeat": time.time() if live else START + steps * 0.1,
    }
    if state == "failed":
        status["error"] = "RuntimeError: out of memory"
    write_status(run, status)
    return run


async def settle(pilot, app: Dashboard) -> None:
    """Wait until the reader thread has delivered everything on disk and the timer has redrawn."""
    for _ in range(100):
        await pilot.pause(0.05)
        if all(not watched.loading for watched in app.watched.values()):
            break
    app._dirty = True
    app._redraw()
    await pilot.pause()


def offered(app: Dashboard) -> set[str]:
    """The keys the footer shows."""
    return {key for key, active in app.active_bindings.items() if active.binding.show and active.enabled}


def plot_ends(plot: MetricPlot, metric: str) -> dict[str, float]:
    """Where each run's drawn `metric` line ends on the x axis, by the run name its label starts with."""
    monitor = plot.plt.monitor
    return {label.split()[0]: xs[-1] for xs, label in zip(monitor.x, monitor.label, strict=True)
            if f" {metric} " in f" {label} "}  # fmt: skip
