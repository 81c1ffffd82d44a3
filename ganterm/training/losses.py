"""GAN objectives on D's logits.

- nonsat: D minimises BCE; G maximises log D(G(z)) (Goodfellow et al.'s fix).
- minimax: G minimises log(1 - D(G(z))), the saturating original; its
  gradient vanishes once D wins, which is worth being able to watch.
- hinge: the SN-GAN / BigGAN margin loss.
- lsgan: least squares against the labels (Mao et al.).

Targets are per-sample so that one-sided label smoothing (real target 1 - s)
and label noise (flipped labels) apply to every loss that uses labels; hinge
takes only their sign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_targets(
    count: int,
    real: bool,
    smoothing: float,
    noise: float,
    rng: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """D's labels for one batch: 1 - smoothing for real, 0 for fake, some flipped."""
    real_label, fake_label = 1.0 - smoothing, 0.0
    label = real_label if real else fake_label
    targets = torch.full((count,), label, device=device)
    if noise > 0:
        flip = torch.rand(count, generator=rng, device=device) < noise
        targets = torch.where(flip, torch.full_like(targets, fake_label if real else real_label), targets)
    return targets


def discriminator_loss(kind: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """D's loss on one batch (real or fake, fed separately) against `targets`."""
    logits = logits.float()
    if kind in ("nonsat", "minimax"):
        return F.binary_cross_entropy_with_logits(logits, targets)
    if kind == "lsgan":
        return 0.5 * (logits - targets).square().mean()
    if kind == "hinge":
        sign = torch.where(targets > 0.5, 1.0, -1.0)
        return F.relu(1.0 - sign * logits).mean()
    raise ValueError(f"unknown loss kind {kind!r}")


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    logits = fake_logits.float()
    if kind == "nonsat":
        return F.softplus(-logits).mean()  # -log D(G(z))
    if kind == "minimax":
        return -F.softplus(logits).mean()  # log(1 - D(G(z)))
    if kind == "lsgan":
        return 0.5 * (logits - 1.0).square().mean()
    if kind == "hinge":
        return -logits.mean()
    raise ValueError(f"unknown loss kind {kind!r}")
