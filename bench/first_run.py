"""First run on a fresh machine: how soon training starts, and how long the whole run takes.

Runs `ganterm train --detach` of the default recipe with `HOME` and
`XDG_CACHE_HOME` pointed at a new, empty folder (no cached quality
classifier), then watches the run directory: seconds from the command to the
first metrics row (torch import included), to the classifier file, to the
first quality point, and to the end. The default data's classifier ships with
ganterm, so its "classifier" is "-": nothing is trained (checkouts from before
that change train it in the background). `--python` runs another checkout's
interpreter, to compare with the code before a change.

    python bench/first_run.py [--steps N] [--python path/to/python]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ganterm.run.jsonl import JsonlTail
from ganterm.run.layout import RunDir
from ganterm.run.status import ACTIVE_STATES, effective_state, read_status

POLL_SECONDS = 0.1


def first_run(python: str, steps: int | None) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        home.mkdir()
        run = Path(folder) / "runs" / "first"
        run_dir = RunDir(run)
        command = [python, "-m", "ganterm", "train", "--detach", "--name", "first", "--root", str(run.parent)]
        command += ["--steps", str(steps)] if steps else []
        env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "COLUMNS": "200"}
        started = time.time()
        # from the empty folder: `python -m` puts the working folder first on the path, and another
        # checkout's interpreter run from this one's folder would import this one's code
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=folder)
        first_row = first_quality = None
        tail = JsonlTail(run / "metrics.jsonl")  # new lines only: the poll must not load the run it times
        while True:
            rows = tail.read()
            if first_row is None and rows:
                first_row = time.time() - started
            quality = next((row for row in rows if "fd_classifier" in row), None)
            if first_quality is None and quality is not None:
                first_quality = quality["t"] - started
            status = read_status(run_dir)
            if effective_state(status) not in ACTIVE_STATES:
                break
            time.sleep(POLL_SECONDS)
        classifiers = list((home / ".cache" / "ganterm" / "classifiers").glob("*.safetensors"))
        return {
            "first row": first_row,
            "classifier": classifiers[0].stat().st_mtime - started if classifiers else None,
            "first quality": first_quality,
            "total": time.time() - started,
            "steps": status["step"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="the recipe's own total when left out")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the checkout to measure")
    args = parser.parse_args()
    figures = first_run(args.python, args.steps)
    print(f"{figures['steps']} steps, empty cache, {args.python}")
    for name in ("first row", "classifier", "first quality", "total"):
        value = figures[name]
        print(f"  {name:<14} {'-' if value is None else f'{value:6.1f} s'}")


if __name__ == "__main__":
    main()
