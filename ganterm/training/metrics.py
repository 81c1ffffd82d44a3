"""Offline quality metrics: nothing here downloads weights.

- Labelled image data (the MNIST family): a small CNN trained once on the
  training data and cached beside it gives an offline FID (`fd_classifier`,
  Fréchet distance of its penultimate features), class coverage, the KL
  divergence of the generated class histogram from the real one, and mean
  classifier confidence.
- 2-D toys: modes covered, the share of high-quality samples and the reverse
  KL of their mode histogram, as VEEGAN and PacGAN measure them.
- Stacked MNIST: each colour channel read by the MNIST classifier, then the
  digit triples covered and the KL of their histogram from uniform, over
  26,000 samples, as VEEGAN and PacGAN measure them.
- Any image data: precision and recall of the generated distribution
  (Kynkäänniemi et al., 2019: k-NN balls in a feature space). Without labels
  the features come from a fixed, seeded, randomly initialised CNN, which
  is known to separate image distributions well enough for this.
"""

from __future__ import annotations

import torch

from ganterm.training.classifier import FeatureNet
from ganterm.training.data import toy_modes

TOY_HQ_SIGMAS = 3.0  # a sample is high quality within 3σ of its nearest mode (VEEGAN, PacGAN)
TOY_MIN_PER_MODE = 20  # modes_covered_20: ganterm's stricter count, a mode needs 20 of 2,500 samples
STACKED_SAMPLES = 26_000  # the samples VEEGAN and PacGAN count Stacked MNIST's modes over
STACKED_MODES = 1000
CHANNELS = ("red", "green", "blue")
COVERED_SHARE = 0.01  # a class counts as covered when at least 1% of the samples fall in it
PR_NEIGHBOURS = 3


@torch.no_grad()
def embed(net: FeatureNet, images: torch.Tensor, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (float64) and class probabilities of [-1, 1] images."""
    features, probabilities = [], []
    for part in images.split(chunk):
        feature, logits = net(part.float().contiguous())
        features.append(feature.double())
        probabilities.append(logits.softmax(dim=1))
    return torch.cat(features), torch.cat(probabilities)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """||mu_r - mu_f||² + tr(S_r + S_f - 2 (S_r^½ S_f S_r^½)^½), in float64."""
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = torch.cov(real.T), torch.cov(fake.T)
    values, vectors = torch.linalg.eigh(cov_r)
    root_r = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_r @ cov_f @ root_r
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * trace_root)


def kl_divergence(share: torch.Tensor, reference: torch.Tensor) -> float:
    """KL(share || reference) of two histograms that each sum to 1; empty bins of `share` add nothing."""
    present = share > 0
    return float((share[present] * (share[present] / reference[present]).log()).sum())


def class_metrics(fake_probs: torch.Tensor, real_labels: torch.Tensor, classes: int) -> dict[str, float]:
    predicted = torch.bincount(fake_probs.argmax(1), minlength=classes).double()
    real = torch.bincount(real_labels, minlength=classes).double()
    share = predicted / predicted.sum()
    return {
        "class_coverage": float((share >= COVERED_SHARE).sum()),
        "class_kl": kl_divergence(share, real / real.sum()),
        "classifier_confidence": float(fake_probs.max(1).values.mean()),
    }


def stacked_metrics(channel_probs: list[torch.Tensor], real_labels: torch.Tensor) -> dict[str, float]:
    """Stacked MNIST, as PacGAN's code counts it: a triple is covered by one sample read as it.

    `mode_kl` is KL(generated triple histogram || uniform over the 1,000 triples);
    `class_kl_<channel>` compares one channel's digits with the real digits' mix.
    """
    digits = [probs.argmax(1) for probs in channel_probs]
    triples = digits[0] * 100 + digits[1] * 10 + digits[2]
    counts = torch.bincount(triples, minlength=STACKED_MODES).double()
    uniform = torch.full((STACKED_MODES,), 1.0 / STACKED_MODES, dtype=torch.float64)
    real = torch.bincount(real_labels, minlength=10).double()
    metrics = {
        "modes_covered": float((counts >= 1).sum()),
        "modes_total": float(STACKED_MODES),
        "mode_kl": kl_divergence(counts / counts.sum(), uniform),
    }
    for name, channel in zip(CHANNELS, digits, strict=True):
        share = torch.bincount(channel, minlength=10).double() / len(channel)
        metrics[f"class_kl_{name}"] = kl_divergence(share, real / real.sum())
    metrics["classifier_confidence"] = float(torch.stack([p.max(1).values for p in channel_probs]).mean())
    return metrics


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS) -> dict[str, float]:
    """Share of fakes inside the real manifold (precision) and of reals inside the fake one (recall)."""

    def radii(points: torch.Tensor) -> torch.Tensor:
        return torch.cdist(points, points).kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest

    def inside(points: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= radius[None, :]).any(dim=1).double().mean())

    return {"precision": inside(fake, real, radii(real)), "recall": inside(real, fake, radii(fake))}


def toy_metrics(name: str, points: torch.Tensor) -> dict[str, float]:
    """Modes covered, high-quality share and reverse KL of 2-D samples in data coordinates.

    As VEEGAN's and PacGAN's code (`extensions.py`) count them: a sample is high
    quality within 3σ of its nearest mode, a mode is covered when it is the
    nearest of at least one such sample, and the reverse KL is that of the
    high-quality samples' mode histogram from uniform (PacGAN Table 1).
    `modes_covered_20` is ganterm's stricter count: 20 samples per mode.
    """
    modes, sigma = toy_modes(name)
    distances = torch.cdist(points.double(), modes.double())
    nearest, which = distances.min(dim=1)
    high_quality = nearest <= TOY_HQ_SIGMAS * sigma
    per_mode = torch.bincount(which[high_quality], minlength=len(modes)).double()
    metrics = {
        "modes_covered": float((per_mode >= 1).sum()),
        "modes_covered_20": float((per_mode >= TOY_MIN_PER_MODE).sum()),
        "modes_total": float(len(modes)),
        "hq_share": float(high_quality.double().mean()),
    }
    if per_mode.sum() > 0:  # with no high-quality sample there is no histogram to compare
        uniform = torch.full((len(modes),), 1.0 / len(modes), dtype=torch.float64)
        metrics["mode_kl"] = kl_divergence(per_mode / per_mode.sum(), uniform)
    return metrics
