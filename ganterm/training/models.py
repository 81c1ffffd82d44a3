"""DCGAN generator/discriminator (Radford et al.) and an MLP pair for 2-D toys.

The DCGAN layout doubles the resolution from a base of 7 (for 28 px) or 4
(for 32 and 64 px), so one pair of classes covers every supported size:

    size  G: z -> ...                           D: image -> ...
    28    7x7 (2w) -> 14x14 (w) -> 28x28        14x14 (w) -> 7x7 (2w) -> logit
    32    4x4 (4w) -> 8x8 (2w) -> 16x16 (w) -> 32x32
    64    4x4 (8w) -> 8x8 (4w) -> 16x16 (2w) -> 32x32 (w) -> 64x64
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganterm.config import Config

_LAYOUT = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size -> (base resolution, doublings)


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, BatchNorm scales N(1, 0.02), as in the DCGAN paper."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class MinibatchStd(nn.Module):
    """Appends the batch's mean feature standard deviation as one more channel.

    A collapsed generator makes near-identical samples, so their spread is a
    signal D can use against mode collapse (Karras et al., 2018).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = x.float().std(dim=0, unbiased=False).mean().to(x.dtype)
        return torch.cat([x, spread.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, channels: int, image_size: int) -> None:
        super().__init__()
        base, doublings = _LAYOUT[image_size]
        widths = [width * 2 ** (doublings - 1 - i) for i in range(doublings)]
        layers: list[nn.Module] = [
            # z (z_dim x 1 x 1) -> (widths[0]) x base x base
            nn.ConvTranspose2d(z_dim, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            # each block doubles height and width and halves the channels
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        # last doubling to channels x image_size x image_size, in [-1, 1]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.z_dim = z_dim
        self.main = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(
        self, width: int, channels: int, image_size: int, use_spectral_norm: bool = False, minibatch_std: bool = False
    ) -> None:
        super().__init__()
        base, doublings = _LAYOUT[image_size]
        widths = [width * 2**i for i in range(doublings)]
        wrap = spectral_norm if use_spectral_norm else (lambda layer: layer)
        # image -> (w) x size/2 x size/2; no normalisation on the first layer (DCGAN)
        layers: list[nn.Module] = [wrap(nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False)), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in itertools.pairwise(widths):
            # each block halves height and width and doubles the channels
            layers.append(wrap(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=use_spectral_norm)))
            if not use_spectral_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
        if minibatch_std:
            layers.append(MinibatchStd())
        # (widths[-1]) x base x base -> one logit
        layers.append(wrap(nn.Conv2d(widths[-1] + int(minibatch_std), 1, base, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(-1)


class MLPGenerator(nn.Module):
    """Three hidden ReLU layers, as in the Unrolled GAN toy experiments."""

    def __init__(self, z_dim: int, width: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.main = nn.Sequential(
            nn.Linear(z_dim, width),
            nn.ReLU(True),
            nn.Linear(width, width),
            nn.ReLU(True),
            nn.Linear(width, width),
            nn.ReLU(True),
            nn.Linear(width, 2),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.z_dim))


class MLPDiscriminator(nn.Module):
    def __init__(self, width: int, use_spectral_norm: bool = False, minibatch_std: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if use_spectral_norm else (lambda layer: layer)
        self.main = nn.Sequential(
            wrap(nn.Linear(2, width)),
            nn.LeakyReLU(0.2, True),
            wrap(nn.Linear(width, width)),
            nn.LeakyReLU(0.2, True),
            wrap(nn.Linear(width, width)),
            nn.LeakyReLU(0.2, True),
            *([MinibatchStd()] if minibatch_std else []),
            wrap(nn.Linear(width + int(minibatch_std), 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(-1)


def build_generator(config: Config) -> nn.Module:
    m = config.model
    if config.is_toy:
        return MLPGenerator(m.z_dim, m.width)
    return DCGANGenerator(m.z_dim, m.width, m.channels, m.image_size)


def build_discriminator(config: Config) -> nn.Module:
    m = config.model
    if config.is_toy:
        return MLPDiscriminator(m.width, m.spectral_norm, m.minibatch_std)
    return DCGANDiscriminator(m.width, m.channels, m.image_size, m.spectral_norm, m.minibatch_std)
