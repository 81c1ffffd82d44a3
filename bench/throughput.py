"""Training throughput: ganterm's loop against a PyTorch-tutorial-style baseline.

Both train the same DCGAN (32 px, width 64, batch 64, 1 channel) on the
bundled MNIST subset, on one device (the CPU unless --device says otherwise),
in this one process:

- baseline: as the PyTorch DCGAN tutorial writes it: a Dataset of PIL images
  with per-image transforms (Resize, ToTensor, Normalize) through a
  DataLoader with 2 workers, default memory format and Adam, and `.item()`
  on each statistic every step (D(x), D(G(z)) twice, both losses); on a GPU
  each batch is copied over as the tutorial does.
- ganterm: `ganterm.training.loop.fit` with full logging (every step's statistics to
  metrics.jsonl), data decoded once into a uint8 tensor, channels_last,
  fused Adam, statistics pulled once per log interval; on a GPU also bf16
  autocast and the data kept on the GPU (the loop's own choices).

Rounds alternate (baseline, ganterm, baseline, ...) so drift in the machine's
speed hits both; the best round of each is reported.

    python bench/throughput.py [--steps 300] [--rounds 2] [--device cpu|cuda] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ganterm.config import load_config
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder
from ganterm.training.data import load_mnist5k, resize
from ganterm.training.loop import Schedule, fit
from ganterm.training.models import DCGANDiscriminator, DCGANGenerator
from ganterm.training.trainer import Trainer, complete_config, pick_device

BATCH, WIDTH, SIZE, Z_DIM = 64, 64, 32, 100


class PilDigits(TorchDataset):
    """The tutorial's data path: PIL images transformed one at a time."""

    def __init__(self) -> None:
        self.images = [Image.fromarray(a[0].numpy()) for a in load_mnist5k().tensor]
        self.transform = T.Compose([T.Resize(SIZE), T.ToTensor(), T.Normalize((0.5,), (0.5,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), 0


def baseline(steps: int, loader: DataLoader, device: torch.device) -> float:
    """Images per second of a tutorial-style loop."""
    torch.manual_seed(0)
    generator = DCGANGenerator(Z_DIM, WIDTH, 1, SIZE).to(device)
    discriminator = DCGANDiscriminator(WIDTH, 1, SIZE).to(device)
    criterion = nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    fixed_noise = torch.randn(64, Z_DIM, device=device)
    losses: list[tuple[float, float]] = []
    done = 0
    start = time.perf_counter()
    while done < steps:
        for real, _ in loader:
            if done == steps:
                break
            real = real.to(device)
            ones = torch.ones(real.shape[0], device=device)
            zeros = torch.zeros(real.shape[0], device=device)
            discriminator.zero_grad()
            output = discriminator(real)
            loss_real = criterion(output, ones)
            loss_real.backward()
            d_x = torch.sigmoid(output).mean().item()
            fake = generator(torch.randn(real.shape[0], Z_DIM, device=device))
            output = discriminator(fake.detach())
            loss_fake = criterion(output, zeros)
            loss_fake.backward()
            d_g_z1 = torch.sigmoid(output).mean().item()
            opt_d.step()
            generator.zero_grad()
            output = discriminator(fake)
            loss_g = criterion(output, ones)
            loss_g.backward()
            d_g_z2 = torch.sigmoid(output).mean().item()
            opt_g.step()
            losses.append(((loss_real + loss_fake).item(), loss_g.item()))
            del d_x, d_g_z1, d_g_z2
            done += 1
            if done % 500 == 0:
                with torch.no_grad():
                    generator(fixed_noise)
    return steps * BATCH / (time.perf_counter() - start)


def ganterm_trainer(device: torch.device, compiled: bool) -> Trainer:
    """One trainer for every round, so compilation (with --compile) happens once, in the warm-up."""
    config = load_config(
        None,
        [
            f"model.image_size={SIZE}",
            f"model.width={WIDTH}",
            "model.spectral_norm=false",  # the tutorial's D: BatchNorm, like the baseline's
            "loss.label_smoothing=0",
            "train.beta1=0.5",  # the tutorial's Adam
            "train.beta2=0.999",
            f"train.batch_size={BATCH}",
            f"train.device={device}",
            f"train.compile={str(compiled).lower()}",
            "log.every=10",
            "sample.every=500",
            "checkpoint.every=0",
        ],
    )
    dataset = resize(load_mnist5k(), SIZE)
    complete_config(config, dataset)
    return Trainer(config, dataset, device)


def ganterm_loop(trainer: Trainer, steps: int) -> float:
    """Images per second of `steps` more steps of `fit`, metrics for every step written to disk."""
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder))
        recorder = Recorder(run, log=lambda message: None, images_per_step=trainer.images_per_step)
        start = time.perf_counter()
        fit(trainer, recorder, Schedule(trainer.step + steps))
        recorder.close()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        elapsed = time.perf_counter() - start
        logged = len(run.metrics.read_bytes().splitlines())
    assert logged == steps, f"expected a metrics row per step, found {logged}"
    return steps * BATCH / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models (train.compile; CUDA only)")
    args = parser.parse_args()
    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__} on {device} ({where}); DCGAN {SIZE} px, width {WIDTH}, "
        f"batch {BATCH}, {args.steps} steps per round"
    )
    loader = DataLoader(
        PilDigits(), batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    baseline(10, loader, device)  # warm-up: workers started, allocator primed, kernels chosen
    trainer = ganterm_trainer(device, args.compile)
    ganterm_loop(trainer, 10)
    results: dict[str, list[float]] = {"baseline": [], "ganterm": []}
    for round_number in range(1, args.rounds + 1):
        results["baseline"].append(baseline(args.steps, loader, device))
        results["ganterm"].append(ganterm_loop(trainer, args.steps))
        print(
            f"round {round_number}: baseline {results['baseline'][-1]:7.1f} img/s   "
            f"ganterm {results['ganterm'][-1]:7.1f} img/s"
        )
    best_baseline, best_ganterm = max(results["baseline"]), max(results["ganterm"])
    print(f"\nbaseline (tutorial style)  {best_baseline:7.1f} img/s")
    print(f"ganterm loop               {best_ganterm:7.1f} img/s")
    print(f"ratio                      {best_ganterm / best_baseline:7.2f}x   (target >= 1.3x)")


if __name__ == "__main__":
    main()
