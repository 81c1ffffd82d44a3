"""A hand-written WGAN-GP loop watched with ganterm: the critic's raw scores read as a critic's.

    python examples/wgan_gp_loop.py --steps 2000
    ganterm watch wgan-digits     # in another shell: critic scores, the score gap, the penalty

`loss="wgan-gp"` tells ganterm that `d_x` and `d_g_z1` are the critic's mean
raw scores, not probabilities: the D panel draws them with a 0 line, and the
alerts are a critic's (gap diverging, scores drifting, penalty dominating).
The networks and the bundled digits are examples/own_loop.py's; the critic
has no BatchNorm, which a per-sample gradient penalty needs. Everything
ganterm-specific is marked `# ganterm`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import torch
from own_loop import Z_DIM, digits, discriminator, generator
from torch.utils.data import DataLoader

import ganterm  # ganterm


def batches(loader: DataLoader) -> Iterator[torch.Tensor]:
    for real, _ in itertools.chain.from_iterable(itertools.repeat(loader)):
        yield real


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(‖∇D(x̂)‖ − 1)² on points between real and fake images (Gulrajani et al. 2017)."""
    mix = torch.rand(real.size(0), 1, 1, 1)
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return (gradient.flatten(1).norm(dim=1) - 1).square().mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="wgan-digits")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--gp-weight", type=float, default=10.0)
    args = parser.parse_args()

    torch.manual_seed(0)
    real_images = batches(DataLoader(digits(), batch_size=args.batch_size, shuffle=True, drop_last=True))
    g, d = generator(args.width), discriminator(args.width)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))

    run = ganterm.Run(  # ganterm
        args.name,
        root=args.root,
        total=args.steps,
        loss="wgan-gp",  # ganterm: d_x and d_g_z1 below are a critic's raw scores
        images_per_step=args.batch_size * args.n_critic,
        config=args,
    )
    for step in run.steps(args.steps):  # ganterm: ends early on `ganterm stop`
        for _ in range(args.n_critic):
            real = next(real_images)
            fake = g(torch.randn(real.size(0), Z_DIM)).detach()
            real_score, fake_score = d(real).mean(), d(fake).mean()
            gp = args.gp_weight * gradient_penalty(d, real, fake)
            loss_d = fake_score - real_score + gp
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        loss_g = -d(g(torch.randn(args.batch_size, Z_DIM))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        run.log(  # ganterm
            step,
            loss_d=loss_d,
            loss_g=loss_g,
            d_x=real_score,
            d_g_z1=fake_score,
            score_gap=real_score - fake_score,  # the Wasserstein estimate, a panel of its own
            gp=gp,
        )
        if step % 200 == 0:
            with torch.no_grad():
                g.eval()
                run.images(step, g(torch.randn(64, Z_DIM)))  # ganterm
                g.train()
    run.finish()  # ganterm


if __name__ == "__main__":
    main()
