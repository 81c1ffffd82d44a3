"""Sample quality of the shipped recipes, measured the way `ganterm eval` does, beside the papers' figures.

Trains `configs/ring.toml`, `configs/grid.toml` and `configs/stacked-mnist.toml`
with seeds from 100 up (seeds 0-2 tuned the recipes, so they are not used) and
the default mnist5k recipe with one, each through the real CLI (`ganterm train
--no-dashboard`, then `ganterm eval --json`). Prints the README's quality
tables in Markdown, the EMA generator's row before the raw one's, and writes
every figure to a JSON file beside the printed table (`--json`).

A run that already exists under `--root` (by its name, `<recipe>-seed<N>`) is
evaluated as it stands, at its newest checkpoint, not trained again: a long
Stacked MNIST run can be trained (or stopped) on its own, and the table says
which step it reached. `--update` adds the figures measured now to an existing
`--json` file (replacing those of the same recipe and seed) and prints the
tables of all of them: Stacked MNIST's seeds can be measured again without
training the toys anew.

    python bench/quality.py [--seeds 3] [--stacked-seeds 3] [--skip-mnist] [--root DIR] [--json FILE] [--update]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).parent.parent / "configs"
FIRST_SEED = 100

# (published method, modes, high-quality share, reverse KL of the mode histogram); None where not reported
PUBLISHED: dict[str, list[tuple[str, float, float | None, float | None]]] = {
    "ring": [  # PacGAN Table 1 (means of 10 trials), VEEGAN Table 1
        ("PacGAN4", 7.8, 0.959, 0.07),
        ("PacGAN's GAN", 6.3, 0.982, 0.45),
        ("VEEGAN", 8, 0.529, None),
        ("Unrolled GAN", 7.6, 0.356, None),
    ],
    "grid": [
        ("PacGAN4", 24.8, 0.936, 0.04),
        ("PacGAN's GAN", 17.3, 0.948, 0.70),
        ("VEEGAN", 24.6, 0.40, None),
        ("Unrolled GAN", 23.6, 0.16, None),
    ],
    "stacked-mnist": [  # PacGAN Table 2, VEEGAN Table 2 (26,000 samples)
        ("PacDCGAN2", 1000, None, 0.06),
        ("VEEGAN", 150, None, 2.95),
        ("Unrolled GAN", 48.7, None, 4.32),
        ("DCGAN", 99, None, 3.40),
    ],
}
TITLES = {
    "ring": "`ring` (8 Gaussians, σ 0.02)",
    "grid": "`grid` (25 Gaussians, σ 0.05)",
    "stacked-mnist": "`stacked-mnist` (1,000 digit triples)",
}


def ganterm(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ganterm", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ganterm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line of a run still being written
            rows.append(json.loads(line))
    return rows


def train_and_eval(recipe: str, seed: int, root: Path) -> dict:
    """One run's figures: `ganterm eval --json` of its newest checkpoint, its step, steps and training time."""
    name = f"{recipe}-seed{seed}"
    run = root / name
    if not (run / "checkpoints").is_dir():
        config = [] if recipe == "mnist5k" else [str(CONFIGS / f"{recipe}.toml")]
        ganterm("train", *config, "--name", name, "--root", str(root), "--set", f"train.seed={seed}", "--no-dashboard")
    status = json.loads((run / "status.json").read_text())
    measured = json.loads(ganterm("eval", name, "--root", str(root), "--json"))
    rows = read_jsonl(run / "metrics.jsonl")
    steps = [row for row in rows if "img_per_s" in row]
    return {
        "recipe": recipe,
        "seed": seed,
        "step": steps[-1]["step"] if steps else 0,
        "steps": status.get("total"),
        "state": status.get("state"),
        "seconds": (steps[-1]["t"] - status["started"]) if steps else None,
        "img_per_s": sorted(row["img_per_s"] for row in steps)[len(steps) // 2] if steps else None,
        "fd_history": [row["fd_classifier"] for row in rows if "fd_classifier" in row],
        "mode_history": [[row["step"], row["modes_covered"], row["mode_kl"]] for row in rows if "mode_kl" in row],
        "generators": measured,
    }


def _joined(values: list[str]) -> str:
    return ", ".join(values)


def _time(run: dict) -> str:
    minutes = (run["seconds"] or 0) / 60
    reached = "" if run["step"] == run["steps"] else f", stopped at step {run['step']:,} of {run['steps']:,}"
    return f"{minutes:.0f} min ({run['img_per_s'] or 0:.0f} img/s{reached})"


def _published(recipe: str) -> str:
    parts = []
    for method, modes, hq, kl in PUBLISHED[recipe]:
        figures = [f"{modes:g}"] + ([f"{hq:.1%}"] if hq is not None else []) + ([f"{kl:g}"] if kl is not None else [])
        parts.append(f"{method} {' / '.join(figures)}")
    return "; ".join(parts)


def modes_table(runs: list[dict]) -> str:
    """Markdown: one row per recipe and generator, the seeds' figures side by side."""
    lines = [
        "| recipe | generator | seeds | modes covered | with 20 samples | high-quality share | mode KL "
        "| training time (2-core CPU) | published (modes / HQ / KL) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for recipe in PUBLISHED:
        mine = [run for run in runs if run["recipe"] == recipe]
        if not mine:
            continue
        for generator in mine[0]["generators"]:
            figures = [run["generators"][generator] for run in mine]
            total = f"{figures[0]['modes_total']:.0f}"
            covered = _joined([f"{m['modes_covered']:.0f}" for m in figures]) + f" of {total}"
            strict = _joined([f"{m['modes_covered_20']:.0f}" for m in figures]) if "hq_share" in figures[0] else "-"
            hq = _joined([f"{m['hq_share']:.1%}" for m in figures]) if "hq_share" in figures[0] else "-"
            kl = _joined([f"{m['mode_kl']:.3f}" if "mode_kl" in m else "-" for m in figures])
            first = generator == next(iter(mine[0]["generators"]))
            lines.append(
                f"| {TITLES[recipe] if first else ''} | {generator} | {_joined([str(r['seed']) for r in mine])} "
                f"| {covered} | {strict} | {hq} | {kl} | {_joined([_time(r) for r in mine]) if first else ''} "
                f"| {_published(recipe) if first else ''} |"
            )
    return "\n".join(lines)


def mnist_table(runs: list[dict]) -> str:
    lines = [
        "| recipe | generator | seed | classes covered | class KL | fd_classifier | classifier confidence "
        "| fd_classifier in training (EMA), first → last | training time (2-core CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        history = run["fd_history"]
        trend = f"{history[0]:.1f} → {history[-1]:.1f}" if history else "-"
        for number, (generator, m) in enumerate(run["generators"].items()):
            lines.append(
                f"| {'`mnist5k` default' if number == 0 else ''} | {generator} | {run['seed']} "
                f"| {m['class_coverage']:.0f}/10 | {m['class_kl']:.3f} | {m['fd_classifier']:.1f} "
                f"| {m['classifier_confidence']:.2f} | {trend if number == 0 else ''} "
                f"| {_time(run) if number == 0 else ''} |"
            )
    return "\n".join(lines)


def stacked_channels(runs: list[dict]) -> str:
    """Lines per Stacked MNIST run the modes table has no room for: channels' class KL, the KL in training."""
    lines = []
    for run in (run for run in runs if run["recipe"] == "stacked-mnist"):
        for generator, m in run["generators"].items():
            kls = ", ".join(f"{m[f'class_kl_{c}']:.3f}" for c in ("red", "green", "blue"))
            lines.append(f"- `stacked-mnist` seed {run['seed']}, {generator}: class KL per channel (r, g, b) {kls}")
        if history := run.get("mode_history"):
            points = "; ".join(f"{step:,}: {modes:.0f} / {kl:.3f}" for step, modes, kl in history)
            lines.append(f"- `stacked-mnist` seed {run['seed']} in training (EMA), step: modes / KL: {points}")
    return "\n".join(lines)


def merged(runs: list[dict], path: Path) -> list[dict]:
    """The runs of an earlier figures file with those measured now in their place, in the tables' order."""
    now = {(run["recipe"], run["seed"]) for run in runs}
    earlier = [run for run in json.loads(path.read_text()) if (run["recipe"], run["seed"]) not in now]
    order = [*PUBLISHED, "mnist5k"]
    return sorted(earlier + runs, key=lambda run: (order.index(run["recipe"]), run["seed"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per toy recipe, from 100 up")
    parser.add_argument("--stacked-seeds", type=int, default=3, help="Stacked MNIST seeds, from 100 up (0: none)")
    parser.add_argument("--skip-mnist", action="store_true", help="leave out the mnist5k default recipe")
    parser.add_argument("--root", type=Path, default=None, help="keep the runs here, and reuse those already there")
    parser.add_argument("--json", type=Path, default=Path("quality.json"), help="where to write the figures")
    parser.add_argument("--update", action="store_true", help="keep the --json file's other runs, print all")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        plan = [(recipe, seed) for recipe in ("ring", "grid") for seed in range(FIRST_SEED, FIRST_SEED + args.seeds)]
        plan += [("stacked-mnist", seed) for seed in range(FIRST_SEED, FIRST_SEED + args.stacked_seeds)]
        plan += [] if args.skip_mnist else [("mnist5k", FIRST_SEED)]
        started = time.perf_counter()
        runs = []
        for recipe, seed in plan:
            runs.append(train_and_eval(recipe, seed, root))
            print(f"measured {recipe} seed {seed} ({time.perf_counter() - started:.0f} s so far)", file=sys.stderr)
    if args.update and args.json.exists():
        runs = merged(runs, args.json)
    args.json.write_text(json.dumps(runs, indent=1) + "\n")
    print(modes_table(runs))
    if channels := stacked_channels(runs):
        print()
        print(channels)
    if mnist := [run for run in runs if run["recipe"] == "mnist5k"]:
        print()
        print(mnist_table(mnist))
    print(f"\n(figures written to {args.json})", file=sys.stderr)


if __name__ == "__main__":
    main()
