"""DiffAugment (Zhao et al., 2020): the same cheap, differentiable augmentations on
every image D sees, real or generated.

With a few thousand training images D memorises the data within a few dozen
epochs and G's samples stop improving; augmenting both sides keeps D honest
without leaking augmentations into G's output, because G is judged through the
same transforms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def translate(images: torch.Tensor, rng: torch.Generator, fraction: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `fraction` of its size, filling with background (-1)."""
    n, _, h, w = images.shape
    shift_y, shift_x = max(1, int(h * fraction)), max(1, int(w * fraction))
    dy = torch.randint(-shift_y, shift_y + 1, (n, 1, 1), generator=rng, device=images.device)
    dx = torch.randint(-shift_x, shift_x + 1, (n, 1, 1), generator=rng, device=images.device)
    rows = (torch.arange(h, device=images.device).view(1, h, 1) + dy + 1).clamp(0, h + 1).expand(n, h, w)
    cols = (torch.arange(w, device=images.device).view(1, 1, w) + dx + 1).clamp(0, w + 1).expand(n, h, w)
    padded = F.pad(images, [1, 1, 1, 1], value=-1.0).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=images.device).view(n, 1, 1).expand(n, h, w)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, rng: torch.Generator, fraction: float = 0.5) -> torch.Tensor:
    """Blank one square of `fraction` of the side at a random place in each image."""
    n, _, h, w = images.shape
    size_y, size_x = int(h * fraction + 0.5), int(w * fraction + 0.5)
    top = torch.randint(0, h + 1 - size_y, (n, 1, 1), generator=rng, device=images.device)
    left = torch.randint(0, w + 1 - size_x, (n, 1, 1), generator=rng, device=images.device)
    ys = torch.arange(h, device=images.device).view(1, h, 1)
    xs = torch.arange(w, device=images.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size_y) & (xs >= left) & (xs < left + size_x)
    return torch.where(inside.unsqueeze(1), torch.zeros((), dtype=images.dtype, device=images.device), images)


def diff_augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return cutout(translate(images, rng), rng)
