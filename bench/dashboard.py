"""Dashboard scale: open a 1,000,000-step run, redraw it, and report time and memory.

Generates a metrics.jsonl the size a long run leaves (every DESIGN statistic
each step, a quality row every 250 steps), then in one process, as the viewer
would: reads it through the dashboard's reader, then times full redraws of
every plot at 120x40 with each view setting. Prints the figures; no thresholds.

    python bench/dashboard.py [--steps 1000000] [--keep PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from ganterm.dashboard.app import Dashboard
from ganterm.dashboard.plots import MetricPlot
from ganterm.rundir import RunDir, float32_precision, write_status


def write_metrics(path: Path, steps: int) -> None:
    rng = random.Random(0)
    start = time.time() - steps * 0.1
    with open(path, "wb") as handle:
        chunk = []
        for step in range(1, steps + 1):
            noise = rng.gauss(0, 0.05)
            stats = {
                "epoch": round(step / 78, 4),
                "loss_d": 0.6 + noise, "loss_d_real": 0.3 + noise, "loss_d_fake": 0.3 - noise,
                "loss_g": 1.2 + 2 * noise + 0.1 * math.sin(step / 1e4), "d_x": 0.75 + noise, "d_g_z1": 0.25 + noise,
                "d_g_z2": 0.2 + noise, "grad_norm_d": 5 + 10 * abs(noise), "grad_norm_g": 3 + 5 * abs(noise),
                "diversity": 0.9 + noise,
            }  # fmt: skip
            row = {"step": step, "t": round(start + step * 0.1, 3)}
            row |= {name: float32_precision(value) for name, value in stats.items()}
            row |= {"lr_d": 2e-4, "lr_g": 2e-4, "img_per_s": round(600.0 + rng.random(), 1)}
            chunk.append(orjson.dumps(row))
            if step % 250 == 0:
                chunk.append(orjson.dumps({"step": step, "t": start + step * 0.1, "fd_classifier": 5e4 / step + 10}))
            if len(chunk) >= 10_000:
                handle.write(b"\n".join(chunk) + b"\n")
                chunk = []
        handle.write(b"\n".join(chunk) + b"\n" if chunk else b"")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(run: RunDir) -> dict[str, float]:
    app = Dashboard([run], run.path.parent)
    figures: dict[str, float] = {}
    started = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.primary.store.rows == 0:
            await pilot.pause(0.01)
        figures["first_screen_s"] = time.perf_counter() - started
        while app.primary.loading:
            await pilot.pause(0.02)
        figures["open_s"] = time.perf_counter() - started
        await pilot.pause(0.3)
        plots = [plot for plot in app.query(MetricPlot) if app.screen.find_widget(plot).region.height]
        durations = []
        for keys in ((), ("s",), ("l",), ("z",), ("s",), ("l",), ("z",), ("z",)):
            await pilot.press(*keys)
            for _ in range(3):
                t0 = time.perf_counter()
                for plot in plots:
                    plot.show(app.plotted_runs(), app.view)
                    plot.render()
                durations.append(time.perf_counter() - t0)
        figures["redraw_ms_median"] = 1000 * sorted(durations)[len(durations) // 2]
        figures["redraw_ms_max"] = 1000 * max(durations)
        figures["plots"] = len(plots)
        figures["rows"] = app.primary.store.rows
        figures["rss_mb"] = rss_mb()
    return figures


STARTUP_PROBE = """
import sys, time
started = time.perf_counter()
import asyncio
from pathlib import Path
from ganterm.dashboard.app import Dashboard
from ganterm.rundir import RunDir

async def main():
    app = Dashboard([RunDir(Path(sys.argv[1]))], Path(sys.argv[1]).parent)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.primary.loading or app.primary.store.rows == 0:
            await pilot.pause(0.01)
        await pilot.pause(0.3)  # one more timer tick: the plots are drawn
        print(time.perf_counter() - started - 0.3, "torch" in sys.modules)
asyncio.run(main())
"""


def normal_run_figures(base: Path) -> None:
    """A 5,000-step run as ganterm train leaves it: time to the first full screen in a fresh process, memory."""
    run = RunDir(base / "normal")
    run.path.mkdir(parents=True, exist_ok=True)
    write_metrics(run.metrics, 5_000)
    write_status(run, {"state": "finished", "step": 5_000, "total": 5_000, "device": "cpu"})
    command = [sys.executable, "-c", STARTUP_PROBE, str(run.path)]
    t0 = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    inside, torch_loaded = result.stdout.split()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"5,000-step run, fresh process: on screen in {wall:.2f} s wall ({float(inside):.2f} s after start of "
          f"Python code), peak RSS {rss:.0f} MB, torch imported: {torch_loaded}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the run here and keep it (default: a temp dir)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="ganterm-bench-"))
    run = RunDir(base / "million")
    if not run.metrics.exists():
        run.path.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_metrics(run.metrics, args.steps)
        write_status(run, {"state": "finished", "step": args.steps, "total": args.steps, "device": "cpu"})
        print(
            f"generated {run.metrics} ({run.metrics.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
        )
    normal_run_figures(base)
    figures = asyncio.run(measure(run))
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print(f"rows read:            {figures['rows']:,.0f}")
    print(f"newest steps shown:   {figures['first_screen_s']:.2f} s")
    print(f"all history loaded:   {figures['open_s']:.2f} s   (target < 3 s)")
    print(f"redraw, {figures['plots']:.0f} visible plots:    median {figures['redraw_ms_median']:.1f} ms, "
          f"max {figures['redraw_ms_max']:.1f} ms   (target < 50 ms)")  # fmt: skip
    print(f"resident memory:      {figures['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
