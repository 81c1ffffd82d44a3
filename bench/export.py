"""Export scale: a 1,000,000-step run to CSV, Parquet and TensorBoard, with the time and peak memory of each.

The run is the one `bench/dashboard.py` generates (every step statistic each
step, a quality row every 250 steps: 1,004,000 rows). Each export runs as a
user would run it, `python -m ganterm export`, in a process of its own, whose
peak resident memory is read from the kernel when it exits. For scale, the
time to parse the same file line by line with orjson is printed beside it,
and the peak memory of the same export of a 10,000-step run.

    python bench/export.py [--steps 1000000] [--keep PATH] [--formats csv,parquet,tensorboard]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from dashboard import parse_line_by_line_s, write_metrics

from ganterm.run.layout import RunDir
from ganterm.run.status import write_status

SMALL = 10_000
OUTPUTS = {"csv": "million.csv", "parquet": "million.parquet", "tensorboard": "tensorboard"}


# Runs `ganterm export` and, as it exits, prints its peak resident memory (VmHWM: of this program alone;
# the kernel's ru_maxrss would also count the memory of the bench process it was forked from).
MEASURED = """
import atexit, sys
def peak():
    with open("/proc/self/status") as status:
        print("peak_kb", next(line.split()[1] for line in status if line.startswith("VmHWM")), file=sys.stderr)
atexit.register(peak)
sys.argv[0] = "ganterm"
from ganterm.cli import main
main()
"""


def timed_export(run: RunDir, fmt: str, out: Path) -> tuple[float, float]:
    """Seconds and peak resident MB of `ganterm export` in a process of its own."""
    command = [sys.executable, "-c", MEASURED, "export", str(run.path), "--format", fmt, "--out", str(out)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise RuntimeError(f"ganterm export --format {fmt} failed: {result.stdout}{result.stderr}")
    peak_kb = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_kb"))
    return seconds, peak_kb / 1024


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="the folder of bench/dashboard.py --keep, or where to keep the run")
    parser.add_argument("--formats", default="csv,parquet,tensorboard")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="ganterm-bench-"))
    run = RunDir(base / "million")
    if not run.metrics.exists():
        run.path.mkdir(parents=True, exist_ok=True)
        write_metrics(run.metrics, args.steps)
        write_status(run, {"state": "finished", "step": args.steps, "total": args.steps, "device": "cpu"})
    small = RunDir(base / "small")  # the same process on a short run: what memory does not grow with the rows
    if not small.metrics.exists():
        small.path.mkdir(parents=True, exist_ok=True)
        write_metrics(small.metrics, SMALL)
    out = Path(tempfile.mkdtemp(prefix="ganterm-export-"))
    try:
        print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
        print(f"metrics.jsonl: {run.metrics.stat().st_size / 1e6:.0f} MB, "
              f"orjson line by line {parse_line_by_line_s(run.metrics, orjson.loads):.1f} s")  # fmt: skip
        for fmt in args.formats.split(","):
            _, small_peak = timed_export(small, fmt, out / f"small-{OUTPUTS[fmt]}")
            seconds, peak = timed_export(run, fmt, out / OUTPUTS[fmt])
            print(f"{fmt:<12} {seconds:6.1f} s   peak RSS {peak:5.0f} MB ({small_peak:.0f} MB for {SMALL:,} steps)   "
                  f"output {size_mb(out / OUTPUTS[fmt]):5.0f} MB")  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
