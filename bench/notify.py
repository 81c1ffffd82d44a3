"""Notifications cost training nothing: the same run with no notify URL, one that refuses, one that never answers.

Each run is a real `ganterm train` whose health checks fire from step 10 (no
warm-up, a 10-step window), so the worker hands notices to a URL that is
down: where nothing listens (refused at once, then three retries), or where a
server takes the connection and never answers (each notice waits out its
5 s once). Throughput is the median `img_per_s` logged after the first 20%
of steps, and the wall time is the whole command's, to the process's exit;
rounds alternate the cases so drift in the machine's speed hits all of them,
and the ratios are the medians over the rounds of each round's ratio.

    python bench/notify.py [--steps 300] [--rounds 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson


def refusing_url() -> str:
    """An address on this machine where nothing listens: a connection there is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


class SilentServer:
    """Takes connections on 127.0.0.1 and never answers: a receiver that hangs."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)  # the kernel completes the handshakes; nobody reads
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/hook"


def train_once(root: Path, name: str, steps: int, device: str, url: str | None) -> tuple[float, float, int]:
    """Median img/s, seconds from the command to its exit, and how many alerts the run raised."""
    command = [sys.executable, "-m", "ganterm", "train", "--name", name, "--root", str(root), "--no-dashboard"]
    command += ["--steps", str(steps), "--device", device, "--set", "health.warmup=0", "--set", "health.window=10"]
    command += ["--set", "quality.every=0", "--set", "sample.every=0", "--set", "checkpoint.every=0"]
    command += ["--notify", url] if url else []
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.monotonic() - started
    rows = [orjson.loads(line) for line in (root / name / "metrics.jsonl").read_bytes().splitlines()]
    rates = [row["img_per_s"] for row in rows if "img_per_s" in row and row["step"] > steps // 5]
    events = [orjson.loads(line) for line in (root / name / "events.jsonl").read_bytes().splitlines()]
    return statistics.median(rates), seconds, sum(event["kind"] == "alert" for event in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, default recipe (DCGAN 32 px, batch 64), {args.steps} steps a run")
    silent = SilentServer()
    urls = {"no notify URL": None, "refusing notify URL": refusing_url(), "silent notify URL": silent.url}
    rates: dict[str, list[float]] = {label: [] for label in urls}
    walls: dict[str, list[float]] = {label: [] for label in urls}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            for index, (label, url) in enumerate(urls.items()):
                rate, wall, alerts = train_once(Path(folder), f"r{round_number}-{index}", args.steps, args.device, url)
                rates[label].append(rate)
                walls[label].append(wall)
                print(f"round {round_number + 1}: {label:20} {rate:8.1f} img/s, {wall:5.1f} s ({alerts} alerts)",
                      flush=True)  # fmt: skip
    base = "no notify URL"
    for label in urls:
        speed = statistics.median(r / b for r, b in zip(rates[label], rates[base], strict=True))
        wall = statistics.median(w - b for w, b in zip(walls[label], walls[base], strict=True))
        print(f"{label:20}: median {statistics.median(rates[label]):8.1f} img/s, {speed:.2f}x of no URL; "
              f"wall time {wall:+.1f} s against no URL (median of the rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
