"""CPU threads: torch's default (a thread per core) against `train.threads = auto`, on the ring recipe.

The ring recipe (configs/ring.toml, on the CPU) trains for a fixed time with torch's default
threads and with the count ganterm's worker chooses, on the machine as it is ("as found": quiet on
a machine of your own) and with one busy-loop process per core running beside it ("busy loop on
every core"), started before and stopped after those two measurements. Everything runs in one
fresh process without OMP_NUM_THREADS, as a user's shell starts `ganterm train`; steps/s count the
steps after a short warm-up, with statistics collected every log interval as the loop does. The
load average before and after is printed: on a shared machine "as found" is only as quiet as
others leave it.

    python bench/threads.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ring.toml"
WARM_UP_STEPS = 3


def steps_per_second(trainer: Any, seconds: float) -> float:
    """Steps/s of `trainer` over `seconds`, after a warm-up; statistics collected as the loop does."""
    for _ in range(WARM_UP_STEPS):
        trainer.train_step()
    trainer.collect_rows()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.train_step()
        steps += 1
        if steps % trainer.config.log.every == 0:
            trainer.collect_rows()
    trainer.collect_rows()
    return steps / (time.perf_counter() - started)


def measure(seconds: float) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """As found, then busy: torch's default threads, then ganterm's choice, each on the same trainer."""
    import torch

    from ganterm.config import load_config
    from ganterm.training.data import load_dataset
    from ganterm.training.threads import choose_threads, forward_flops, usable_cores
    from ganterm.training.trainer import Trainer, complete_config

    config = load_config(CONFIG, ["train.device=cpu"])
    dataset = load_dataset(config)
    complete_config(config, dataset)
    cpu = torch.device("cpu")
    trainer = Trainer(config, dataset, cpu)
    default_threads = torch.get_num_threads()
    flops = lambda: forward_flops(trainer.generator, trainer.discriminator, config.model.z_dim, trainer.local_batch)  # noqa: E731
    rows = []
    for machine in ("as found", "busy loop on every core"):
        loops = busy_loops(len(usable_cores())) if machine != "as found" else []
        try:
            time.sleep(1.0 if loops else 0.0)  # the loops are running before anyone looks at the cores
            torch.set_num_threads(default_threads)
            default = {"threads": default_threads, "steps_per_s": steps_per_second(trainer, seconds)}
            threads, why = choose_threads("auto", cpu, flops)
            torch.set_num_threads(threads)
            auto = {"threads": threads, "why": why, "steps_per_s": steps_per_second(trainer, seconds)}
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
        rows.append((machine, default, auto))
        print(f"{machine}: done; {load()}", flush=True)
    return rows


def busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed training per measurement")
    args = parser.parse_args()
    if os.environ.pop("OMP_NUM_THREADS", None) is not None:  # torch reads it once, at import: start afresh
        os.execv(sys.executable, [sys.executable, *sys.argv])
    print(f"before: {load()}", flush=True)
    rows = measure(args.seconds)
    print(f"after: {load()}\n")
    print("| machine | torch's default | train.threads = auto | auto / default |")
    print("| --- | --- | --- | --- |")
    for machine, default, auto in rows:
        print(
            f"| {machine} | {default['steps_per_s']:.1f} steps/s ({default['threads']} threads) "
            f"| {auto['steps_per_s']:.1f} steps/s ({auto['threads']} thread(s)) "
            f"| {auto['steps_per_s'] / default['steps_per_s']:.2f}x |"
        )
    for machine, _, auto in rows:
        print(f"- {machine}, auto: {auto['why']}")


if __name__ == "__main__":
    main()
