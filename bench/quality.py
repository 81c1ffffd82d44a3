"""Sample quality of the shipped recipes, measured the way `ganterm eval` does.

Trains `configs/ring.toml` and `configs/grid.toml` with several fixed seeds
and the default mnist5k recipe with one, each through the real CLI (`ganterm
train --no-dashboard`, then `ganterm eval --json`), and prints one table: modes
covered and high-quality share for the toys (beside published figures), class
coverage, class KL and fd_classifier (first and last measurement) for mnist5k.

    python bench/quality.py [--seeds 3] [--skip-mnist] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).parent.parent / "configs"

PUBLISHED = {
    "ring": "VEEGAN 8 / 52.9%, Unrolled GAN 7.6 / 35.6%, plain GAN 1 / 99.3%",
    "grid": "VEEGAN 24.6 / 40%, PacGAN 24.8 / 93.6%",
}


def ganterm(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ganterm", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ganterm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def train_and_eval(recipe: str, seed: int, root: Path) -> tuple[dict, list[float], float]:
    """Metrics of the finished run, its fd_classifier history, and the training time."""
    name = f"{recipe}-seed{seed}"
    config = [] if recipe == "mnist5k" else [str(CONFIGS / f"{recipe}.toml")]
    started = time.perf_counter()
    ganterm("train", *config, "--name", name, "--root", str(root), "--set", f"train.seed={seed}", "--no-dashboard")
    seconds = time.perf_counter() - started
    metrics = json.loads(ganterm("eval", name, "--root", str(root), "--json"))
    rows = (json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines() if line)
    fd_history = [row["fd_classifier"] for row in rows if "fd_classifier" in row]
    return metrics, fd_history, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per toy recipe")
    parser.add_argument("--skip-mnist", action="store_true", help="only the 2-D toys (a few minutes)")
    parser.add_argument("--root", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        header = ("recipe", "seed", "modes", "HQ", "classes", "KL", "fd first→last", "time")
        print("{:8} {:>4} {:>7} {:>7} {:>7} {:>6} {:>16} {:>6}".format(*header))
        for recipe in ("ring", "grid"):
            covered = []
            for seed in range(args.seeds):
                m, _, seconds = train_and_eval(recipe, seed, root)
                covered.append((m["modes_covered"], m["hq_share"]))
                print(f"{recipe:8} {seed:>4} {m['modes_covered']:>3.0f}/{m['modes_total']:<3.0f} {m['hq_share']:>7.1%}"
                      f" {'':>7} {'':>6} {'':>16} {seconds:>5.0f}s", flush=True)  # fmt: skip
            modes = sum(c for c, _ in covered) / len(covered)
            hq = sum(h for _, h in covered) / len(covered)
            print(f"{recipe:8} {'mean':>4} {modes:>7.1f} {hq:>7.1%}   published: {PUBLISHED[recipe]}", flush=True)
        if not args.skip_mnist:
            m, fd, seconds = train_and_eval("mnist5k", 0, root)
            trend = f"{fd[0]:.1f}→{fd[-1]:.1f}" if fd else "-"
            print(f"{'mnist5k':8} {0:>4} {'':>7} {'':>7} {m['class_coverage']:>5.0f}/10 {m['class_kl']:>6.3f}"
                  f" {trend:>16} {seconds:>5.0f}s")  # fmt: skip


if __name__ == "__main__":
    main()
