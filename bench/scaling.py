"""Scaling: the same recipe trained by 1, 2, ... processes through `ganterm train --nproc-per-node N`.

Each run is a real `ganterm train` (torchrun, DDP, gloo on the CPU or NCCL on
GPUs) of the same global batch; throughput is the median `img_per_s` the run
logged after its first 20% of steps (start-up and warm-up left out), which is
global: images of every rank per second. Rounds alternate the process counts
so drift in the machine's speed hits all of them.

    python bench/scaling.py [--processes 1 2] [--steps 300] [--rounds 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson


def train_once(root: Path, name: str, processes: int, steps: int, device: str) -> float:
    command = [sys.executable, "-m", "ganterm", "train", "--name", name, "--root", str(root), "--no-dashboard"]
    command += ["--nproc-per-node", str(processes), "--steps", str(steps), "--device", device]
    command += ["--set", "quality.every=0", "--set", "sample.every=0", "--set", "checkpoint.every=0"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "COLUMNS": "200"})
    rows = [orjson.loads(line) for line in (root / name / "metrics.jsonl").read_bytes().splitlines()]
    rates = [row["img_per_s"] for row in rows if "img_per_s" in row and row["step"] > steps // 5]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, default recipe (DCGAN 32 px, global batch 64), {args.steps} steps a run")
    results: dict[int, list[float]] = {n: [] for n in args.processes}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            for processes in args.processes:
                rate = train_once(Path(folder), f"r{round_number}-n{processes}", processes, args.steps, args.device)
                results[processes].append(rate)
                print(f"round {round_number + 1}: {processes} process(es) {rate:8.1f} img/s", flush=True)
    base = max(results[args.processes[0]])
    for processes, rates in results.items():
        best = max(rates)
        print(f"{processes} process(es): best {best:8.1f} img/s, {best / base:.2f}x of {args.processes[0]}")


if __name__ == "__main__":
    main()
