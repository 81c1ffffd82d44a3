"""Notifications cost training nothing: the same run with no notify URL and with one that refuses connections.

Each run is a real `ganterm train` whose health checks fire from step 10 (no
warm-up, a 10-step window), so the worker hands notices to a URL where
nothing listens: every one is tried, retried and given up on while training
goes on. Throughput is the median `img_per_s` logged after the first 20% of
steps; rounds alternate the two so drift in the machine's speed hits both.

    python bench/notify.py [--steps 300] [--rounds 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson


def refusing_url() -> str:
    """An address on this machine where nothing listens: a connection there is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


def train_once(root: Path, name: str, steps: int, device: str, url: str | None) -> tuple[float, int]:
    """Median img/s, and how many alerts the run raised."""
    command = [sys.executable, "-m", "ganterm", "train", "--name", name, "--root", str(root), "--no-dashboard"]
    command += ["--steps", str(steps), "--device", device, "--set", "health.warmup=0", "--set", "health.window=10"]
    command += ["--set", "quality.every=0", "--set", "sample.every=0", "--set", "checkpoint.every=0"]
    command += ["--notify", url] if url else []
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "COLUMNS": "200"})
    rows = [orjson.loads(line) for line in (root / name / "metrics.jsonl").read_bytes().splitlines()]
    rates = [row["img_per_s"] for row in rows if "img_per_s" in row and row["step"] > steps // 5]
    events = [orjson.loads(line) for line in (root / name / "events.jsonl").read_bytes().splitlines()]
    return statistics.median(rates), sum(event["kind"] == "alert" for event in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, default recipe (DCGAN 32 px, batch 64), {args.steps} steps a run")
    results: dict[str, list[float]] = {"no notify URL": [], "refusing notify URL": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            for index, label in enumerate(results):
                url = refusing_url() if label.startswith("refusing") else None
                rate, alerts = train_once(Path(folder), f"r{round_number}-{index}", args.steps, args.device, url)
                results[label].append(rate)
                print(f"round {round_number + 1}: {label:20} {rate:8.1f} img/s ({alerts} alerts)", flush=True)
    base = max(results["no notify URL"])
    for label, rates in results.items():
        print(f"{label:20}: best {max(rates):8.1f} img/s, {max(rates) / base:.2f}x")


if __name__ == "__main__":
    main()
