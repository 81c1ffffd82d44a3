"""Writes a StyleGAN2-ADA / StyleGAN3-style training folder the way NVlabs' code does, for tests of its readers.

The line numbers are those of NVlabs/stylegan2-ada-pytorch at d72cc7d; stylegan3 (c233a91) writes the same
files from the same lines, give or take a few, and adds `Resources/peak_gpu_mem_reserved_gb` to each tick.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

# The names a run's stats.jsonl holds, in the order the Collector first sees them (training_stats.py:141,
# insertion order of `_counters`): the losses of the first batch's phases (training/loss.py:69-128), then the
# tick's status line (training_loop.py:325-336), then each phase's time (training_loop.py:387).
LOSS_STATS = (
    "Loss/scores/fake",
    "Loss/signs/fake",
    "Loss/G/loss",
    "Loss/pl_penalty",
    "Loss/G/reg",
    "Loss/scores/real",
    "Loss/signs/real",
    "Loss/D/loss",
    "Loss/r1_penalty",
    "Loss/D/reg",
)
TICK_STATS = (
    "Progress/tick",
    "Progress/kimg",
    "Timing/total_sec",
    "Timing/sec_per_tick",
    "Timing/sec_per_kimg",
    "Timing/maintenance_sec",
    "Resources/cpu_mem_gb",
    "Resources/peak_gpu_mem_gb",
    "Progress/augment",
    "Timing/total_hours",
    "Timing/total_days",
)
PHASE_STATS = ("Timing/Gmain", "Timing/Greg", "Timing/Dmain", "Timing/Dreg")
STATS = LOSS_STATS + TICK_STATS + PHASE_STATS
GRID_SIZE = (4, 2)  # columns, rows: the loop picks 7..32 by 4..32 cells; any size is read the same way
CELL = 8


def loss_value(name: str, kimg: int) -> float:
    """A made-up but recognisable value: each statistic its own curve."""
    return round(1.0 / (1 + kimg) + STATS.index(name) / 10, 6)


def stat(mean: float, num: int = 64) -> dict[str, float]:
    """One statistic as `Collector.as_dict` holds it (training_stats.py:212-224): {num, mean, std}."""
    return {"num": num, "mean": mean, "std": 0.0 if num == 1 else 0.25}


def tick_record(tick: int, nimg: int, start: float = 1_700_000_000.0) -> dict[str, Any]:
    """The stats of one tick (report0 makes num 1 for the loop's own numbers)."""
    kimg = nimg // 1000
    seconds = 60.0 * (tick + 1)
    record = {name: stat(loss_value(name, kimg)) for name in LOSS_STATS}
    record.update(
        {
            "Progress/tick": stat(tick, 1),
            "Progress/kimg": stat(float(np.float32(nimg / 1e3)), 1),  # reduced in float32 (training_stats.py:24)
            "Timing/total_sec": stat(seconds, 1),
            "Timing/sec_per_tick": stat(60.0, 1),
            "Timing/sec_per_kimg": stat(15.0, 1),
            "Timing/maintenance_sec": stat(0.5, 1),
            "Resources/cpu_mem_gb": stat(4.5, 1),
            "Resources/peak_gpu_mem_gb": stat(9.25, 1),
            "Progress/augment": stat(min(0.6, 0.01 * tick), 1),
            "Timing/total_hours": stat(seconds / 3600, 1),
            "Timing/total_days": stat(seconds / 86400, 1),
        }
    )
    record.update({name: stat(120.0, 1) for name in PHASE_STATS})
    return record


def save_image_grid(path: Path, seed: int) -> None:
    """training_loop.py:68-84: one RGB PNG through Pillow."""
    cells = np.random.default_rng(seed).integers(0, 256, (GRID_SIZE[1] * CELL, GRID_SIZE[0] * CELL, 3))
    PIL.Image.fromarray(cells.astype(np.uint8), "RGB").save(path)


class StyleganFolder:
    """A training folder growing tick by tick, as `train.py` and `training_loop` leave it.

    `kimg_per_tick` and `snapshot_ticks` play the loop's options of those names (image and network snapshots
    at the same ticks, as stylegan3's `--snap` sets them); each snapshot is evaluated with `metrics`.
    """

    def __init__(
        self,
        path: Path,
        kimg_per_tick: int = 4,
        snapshot_ticks: int = 2,
        metrics: tuple[str, ...] = ("fid50k_full",),
        batch: int = 32,
    ) -> None:
        self.path = path
        self.kimg_per_tick = kimg_per_tick
        self.snapshot_ticks = snapshot_ticks
        self.metrics = metrics
        self.batch = batch
        self.options = {"num_gpus": 1, "batch_size": batch, "kimg_per_tick": kimg_per_tick, "run_dir": str(path)}
        self.tick = 0
        self.nimg = 0

    def start(self) -> StyleganFolder:
        """train.py:522-524 writes the options; the loop prints to log.txt (train.py:364), saves reals.png and
        fakes_init.png (training_loop.py:223,227) and opens stats.jsonl with 'wt' (training_loop.py:237)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "training_options.json", "w") as handle:
            json.dump(self.options, handle, indent=2)
        self.log("Loading training set...", "Exporting sample images...")
        save_image_grid(self.path / "reals.png", seed=0)
        save_image_grid(self.path / "fakes_init.png", seed=1)
        self.log("Initializing logs...")
        with open(self.path / "stats.jsonl", "w"):
            pass
        self.tick, self.nimg = 0, 0
        return self

    def log(self, *lines: str) -> None:
        """dnnlib.util.Logger appends the console to log.txt, flushing each write."""
        with open(self.path / "log.txt", "a") as handle:
            handle.writelines(line + "\n" for line in lines)

    def ticks(self, count: int) -> StyleganFolder:
        """`count` ticks, in the order of the loop's maintenance (training_loop.py:317-404)."""
        for _ in range(count):
            self.nimg += self.batch if self.tick == 0 else self.kimg_per_tick * 1000  # tick 0 comes after one batch
            kimg = self.nimg // 1000
            self.log(f"tick {self.tick:<5d} kimg {self.nimg / 1e3:<8.1f} time {60 * (self.tick + 1)}s")
            if self.tick % self.snapshot_ticks == 0:
                save_image_grid(self.path / f"fakes{kimg:06d}.png", seed=2 + self.tick)  # training_loop.py:350
                snapshot = self.path / f"network-snapshot-{kimg:06d}.pkl"  # training_loop.py:364
                snapshot.write_bytes(b"pickled networks")
                for metric in self.metrics:
                    self.report_metric(metric, snapshot, fid_value(kimg))
            self.write_stats(tick_record(self.tick, self.nimg))
            self.tick += 1
        return self

    def write_stats(self, record: dict[str, Any]) -> None:
        """training_loop.py:393-396: `json.dumps` (NaN written as NaN) and a newline, then a flush."""
        with open(self.path / "stats.jsonl", "a") as handle:
            handle.write(json.dumps(dict(record, timestamp=1_700_000_000.0 + self.tick)) + "\n")

    def report_metric(self, metric: str, snapshot: Path, value: float | dict[str, float]) -> None:
        """metrics/metric_main.py:report_metric: the result dict, the snapshot relative to the run, a time.

        A metric of several results (pr50k3_full: precision and recall) takes them as a dict."""
        results = value if isinstance(value, dict) else {metric: value}
        result = {"results": results, "metric": metric, "total_time": 12.5, "total_time_str": "12s", "num_gpus": 1}
        line = json.dumps(dict(result, snapshot_pkl=os.path.relpath(snapshot, self.path), timestamp=1.7e9))
        with open(self.path / f"metric-{metric}.jsonl", "a") as handle:
            handle.write(line + "\n")


def fid_value(kimg: int) -> float:
    return round(100 / math.sqrt(1 + kimg), 4)


def write_stylegan_folder(path: Path, ticks: int, **options: Any) -> StyleganFolder:
    """A StyleGAN training folder of `ticks` ticks (see StyleganFolder for the options)."""
    return StyleganFolder(path, **options).start().ticks(ticks)
