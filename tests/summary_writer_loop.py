"""A training loop that knows nothing of ganterm: it logs through torch's SummaryWriter, as most GAN code does.

`python tests/summary_writer_loop.py LOGDIR SECONDS`: a step every 50 ms, each flushed,
with the names of PyTorch's DCGAN tutorial and a histogram now and then.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from torch.utils.tensorboard import SummaryWriter


def main(logdir: str, seconds: float) -> None:
    writer = SummaryWriter(logdir)
    deadline, step = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        writer.add_scalar("Loss_D", 1.2 + 0.1 * math.sin(step / 20), step)
        writer.add_scalar("Loss_G", 0.9 + 0.1 * math.cos(step / 20), step)
        writer.add_scalar("D(x)", 0.6 + 0.05 * math.sin(step / 30), step)
        writer.add_scalar("D_G_z", 0.4 + 0.05 * math.cos(step / 30), step)
        writer.add_scalar("temperature", 1.0 / (1 + step), step)
        if step % 50 == 0:
            writer.add_histogram("weights", np.random.default_rng(step).normal(size=100), step)
        writer.flush()
        step += 1
        time.sleep(0.05)
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
