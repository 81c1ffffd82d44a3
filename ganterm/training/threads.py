"""How many CPU threads training takes (`train.threads`).

torch's default, a thread per core, loses badly on a machine that is busy: at
every parallel op each thread waits for the slowest, and a thread the
scheduler put off costs a whole time slice. The ring recipe trained 10-20x
slower so. A small model's ops are also too short to gain from being split.
So `auto` gives a thread per FLOPS_PER_THREAD of a batch's forward pass
through G and D, and no more threads than the cores that sit idle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
from torch import nn

# forward FLOPs of one batch worth a thread: the ring's 1.4e8 gets one, the mnist5k DCGAN's 1.8e9 three
FLOPS_PER_THREAD = 5e8
IDLE_SAMPLE_SECONDS = 0.25  # how long the cores' idle time is watched


def forward_flops(generator: nn.Module, discriminator: nn.Module, z_dim: int, batch: int) -> float:
    """FLOPs of a batch of noise through G, then D; counted on two samples, in eval mode, so training is untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(generator.parameters()).device
    modes = generator.training, discriminator.training
    generator.eval(), discriminator.eval()  # BatchNorm keeps its running statistics as they are
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            discriminator(generator(torch.zeros(2, z_dim, device=device)))  # two: minibatch-std needs a pair
    finally:
        generator.train(modes[0]), discriminator.train(modes[1])
    return counter.get_total_flops() / 2 * batch


def usable_cores() -> set[int]:
    """The cores this process may run on (all of them where the system does not say)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def idle_cores(seconds: float = IDLE_SAMPLE_SECONDS) -> float | None:
    """How many of the cores this process may use sat idle over `seconds`; None where /proc/stat is not."""
    allowed = {f"cpu{index}" for index in usable_cores()}

    def times() -> dict[str, tuple[int, int]]:  # per core: idle (with iowait), and all but guest (inside user)
        with open("/proc/stat", encoding="ascii") as stat:
            rows = [line.split() for line in stat if line.startswith("cpu")]
        return {row[0]: (int(row[4]) + int(row[5]), sum(map(int, row[1:9]))) for row in rows if row[0] in allowed}

    try:
        before = times()
        time.sleep(seconds)
        after = times()
    except (OSError, ValueError, IndexError):
        return None
    idle = 0.0
    for core, (idle_after, total_after) in after.items():
        idle_before, total_before = before.get(core, (idle_after, total_after))
        idle += (idle_after - idle_before) / (total_after - total_before) if total_after > total_before else 1.0
    return idle


def choose_threads(setting: int | str, device: torch.device, flops: Callable[[], float]) -> tuple[int, str]:
    """The thread count for `train.threads` and why, in words for the log; `flops` is asked only when needed."""
    if setting != "auto":
        return int(setting), "train.threads"
    if device.type != "cpu":
        return torch.get_num_threads(), f"torch's default: the {device.type} device does the work"
    if os.environ.get("OMP_NUM_THREADS"):  # the user's, or the launcher's share of the cores among processes
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    work = flops()
    said = f"auto: {work / 1e9:.2f} GFLOP a batch's forward pass"
    by_work = max(1, int(work // FLOPS_PER_THREAD))
    if by_work == 1:  # no need to watch the cores
        return 1, f"{said}, too little to share among threads"
    cores = len(usable_cores())
    idle = idle_cores()
    free = cores if idle is None else max(1, int(idle + 0.5))
    seen = f"{idle:.1f} of {cores} cores idle" if idle is not None else f"{cores} cores"
    return min(by_work, free, cores), f"{said}, {seen}"
