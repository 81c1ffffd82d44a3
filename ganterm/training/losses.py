"""GAN objectives on D's logits, and the gradient penalties.

- nonsat: D minimises BCE; G maximises log D(G(z)) (Goodfellow et al.'s fix).
- minimax: G minimises log(1 - D(G(z))), the saturating original; its
  gradient vanishes once D wins, which is worth being able to watch.
- hinge: the SN-GAN / BigGAN margin loss.
- lsgan: least squares against the labels (Mao et al.).
- wgan-gp: the Wasserstein critic, E[D(G(z))] - E[D(x)], held 1-Lipschitz by a
  gradient penalty on interpolates (Gulrajani et al.).
- rpgan: relativistic pairing, softplus(-(D(x) - D(G(z)))) for D and the
  mirror for G (the R3GAN baseline, with R1 and R2).

Targets are per-sample so that one-sided label smoothing (real target 1 - s)
and label noise (flipped labels) apply to every loss that uses labels; hinge
and wgan-gp take only their sign, rpgan none. What each loss's numbers mean
to a reader is its family's (`ganterm.families`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAIRED = ("rpgan",)  # losses of real and fake scores together, not of each batch against its labels


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
    sign = torch.where(targets > 0.5, 1.0, -1.0)
    if kind == "hinge":
        return F.relu(1.0 - sign * logits).mean()
    if kind == "wgan-gp":
        return -(sign * logits).mean()
    raise ValueError(f"unknown loss kind {kind!r}")


def paired_discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss on real and fake scores together, for the losses in `PAIRED`."""
    if kind == "rpgan":
        return F.softplus(-(real_logits.float() - fake_logits.float())).mean()
    raise ValueError(f"unknown paired loss kind {kind!r}")


def generator_loss(kind: str, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """G's loss; `real_logits` (D's scores of real images, without gradient) only for the losses in `PAIRED`."""
    logits = fake_logits.float()
    if kind == "nonsat":
        return F.softplus(-logits).mean()  # -log D(G(z))
    if kind == "minimax":
        return -F.softplus(logits).mean()  # log(1 - D(G(z)))
    if kind == "lsgan":
        return 0.5 * (logits - 1.0).square().mean()
    if kind in ("hinge", "wgan-gp"):
        return -logits.mean()
    if kind == "rpgan":
        assert real_logits is not None
        return F.softplus(-(logits - real_logits.float())).mean()
    raise ValueError(f"unknown loss kind {kind!r}")


def input_gradient_norms(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """‖∇ₓD(x)‖ per sample, kept in the graph so that a penalty on it trains D (a double backward)."""
    (gradient,) = torch.autograd.grad(logits.float().sum(), inputs, create_graph=True)
    return gradient.float().flatten(1).norm(dim=1)


def interpolates(real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Points on straight lines between real and fake samples, where WGAN-GP holds D's gradient norm at 1."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    mix = torch.rand(shape, generator=rng, device=real.device)
    return torch.lerp(fake.detach().to(real.dtype), real, mix).requires_grad_(True)
