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

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganterm.errors import UserError
from ganterm.training.checkpoint import Checkpoint
from ganterm.training.classifier import (
    ClassifierBuild,
    FeatureNet,
    cached_classifier,
    classifier_dataset,
    random_feature_net,
    train_classifier,
)
from ganterm.training.data import STACKED_NAME, TOY_SAMPLE_POINTS, Dataset, toy_modes
from ganterm.training.sample import generate, latent

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


@dataclass
class QualityProbe:
    """Everything fixed about a run's quality measurement, prepared once.

    A classifier still being trained in the background (`build`) is awaited lazily: until it
    is ready, `measure` measures nothing and the real images wait in `real_images`.
    """

    dataset_name: str
    toy: bool
    point_scale: float = 1.0
    net: FeatureNet | None = None
    real_features: torch.Tensor | None = None
    real_labels: torch.Tensor | None = None
    classes: int = 0
    samples: int = 1000
    seed: int = 0
    real_images: torch.Tensor | None = None
    build: ClassifierBuild | None = None
    log: Callable[[str], None] = print
    unavailable: bool = False  # the classifier could not be had: nothing is measured
    stacked: bool = False  # Stacked MNIST: each channel read by the MNIST classifier

    @classmethod
    def prepare(cls, dataset: Dataset, samples: int, seed: int, cache: Path,
                log: Callable[[str], None] = print, config_path: Path | None = None) -> QualityProbe:  # fmt: skip
        """With `config_path` (the run's config), a classifier not cached yet is trained in the background."""
        dataset = dataset.to(torch.device("cpu"))
        if not dataset.is_image:
            return cls(dataset.name, toy=True, point_scale=dataset.point_scale, samples=TOY_SAMPLE_POINTS, seed=seed)
        stacked = dataset.name == STACKED_NAME
        reference = classifier_dataset(dataset)  # the digits, for Stacked MNIST
        labelled = reference.labels is not None and reference.num_classes > 1
        labels = reference.labels if labelled else None
        samples = STACKED_SAMPLES if stacked else samples
        picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:samples]
        # Stacked MNIST is judged by its digit triples, not against real features
        real = None if stacked else dataset.batch(picked)
        probe = cls(dataset.name, toy=False, real_labels=labels, classes=reference.num_classes, samples=samples,
                    seed=seed, log=log, stacked=stacked)  # fmt: skip
        if not labelled:
            probe.net = random_feature_net(dataset.channels)
        else:
            probe.net = cached_classifier(reference, cache, log)
            if probe.net is None and config_path is not None:
                log(
                    f"training the quality classifier for {reference.name} in the background (once per dataset): "
                    "quality is measured from when it is ready"
                )
                probe.build, probe.real_images = ClassifierBuild(reference, cache, config_path), real
                return probe
            if probe.net is None:  # `ganterm eval`, which cannot go on without it
                probe.net = train_classifier(reference, cache, log)
        if real is not None:
            probe.real_features, _ = embed(probe.net, real)
        return probe

    @property
    def waiting_for(self) -> str | None:
        """What measuring waits for, in words, while it waits."""
        if self.build is None:
            return None
        return f"the {self.build.dataset.name} classifier (trained once)"

    def ready(self, wait_s: float = 0.0) -> bool:
        """Whether `measure` can measure; takes the background classifier in once it is done.

        A failed build ends the waiting too: the run goes on without quality, and says so once.
        """
        if self.build is None:
            return True
        net = self.build.result(wait_s)
        if self.build.failed:
            self.log(f"warning: {self.build.failed}; this run goes on without quality measurements "
                     "(`ganterm eval` measures any checkpoint later)")  # fmt: skip
            self.build, self.real_images, self.unavailable = None, None, True
            return True
        if net is None:
            return False
        self.net, self.build = net, None
        if self.real_images is not None:
            self.real_features, _ = embed(net, self.real_images)
            self.real_images = None
        return True

    @property
    def left_out(self) -> str | None:
        """Why precision and recall cannot be measured on this data, if they cannot."""
        real = next((len(held) for held in (self.real_features, self.real_images) if held is not None), 0)
        if self.toy or self.stacked or real > PR_NEIGHBOURS:
            return None
        return (
            f"precision and recall are not measured: their {PR_NEIGHBOURS}-nearest-neighbour radii need more than "
            f"{PR_NEIGHBOURS} real images, and {self.dataset_name} holds {real}"
        )

    def measure(self, generator: nn.Module, z_dim: int) -> dict[str, float]:
        """The metrics of the generator's samples; none while the classifier is not ready."""
        if not self.ready() or self.unavailable:
            return {}
        z = latent(self.seed + 77_777, self.samples, z_dim)
        output = generate(generator, z)
        if self.toy:
            return toy_metrics(self.dataset_name, output * self.point_scale)
        assert self.net is not None
        if self.stacked:
            assert self.real_labels is not None
            channels = [embed(self.net, output[:, [c]])[1] for c in range(len(CHANNELS))]
            return stacked_metrics(channels, self.real_labels)
        assert self.real_features is not None
        fake_features, fake_probs = embed(self.net, output)
        # a handful of real images (a tiny folder) has no k-th neighbour: the measure is left out, not failed
        enough = min(len(self.real_features), len(fake_features)) > PR_NEIGHBOURS
        metrics = precision_recall(self.real_features, fake_features) if enough else {}
        if self.real_labels is not None:
            metrics["fd_classifier"] = frechet_distance(self.real_features, fake_features)
            metrics |= class_metrics(fake_probs, self.real_labels, self.classes)
        return {k: v for k, v in metrics.items() if math.isfinite(v)}


def checkpoint_generators(checkpoint: Checkpoint, path: Path) -> dict[str, nn.Module]:
    """The generators a checkpoint holds, by name, the EMA one first: the papers measure the raw one."""
    from ganterm.training.checkpoint import load_weights
    from ganterm.training.models import build_generator

    if checkpoint.exported:  # `ganterm export` keeps one generator, and not which of the two it was
        weights = {"exported": checkpoint.generator}
    else:
        weights = {"ema": checkpoint.generator_ema, "raw": checkpoint.generator}
    generators = {}
    for name, tensors in weights.items():
        if tensors:
            generators[name] = build_generator(checkpoint.config)
            load_weights(generators[name], tensors, path, "generator")
    return generators


def evaluate_checkpoint(path: Path, log: Callable[[str], None] = print) -> tuple[dict[str, dict[str, float]], int]:
    """The metrics of `ganterm eval` for each generator of a checkpoint, EMA first; also returns its step."""
    from ganterm.training.checkpoint import load_checkpoint
    from ganterm.training.data import cache_root, load_dataset

    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    dataset = load_dataset(config, progress=log)
    probe = QualityProbe.prepare(dataset, config.quality.samples, config.train.seed, cache_root(config), log)
    measured = {
        name: probe.measure(generator, config.model.z_dim)
        for name, generator in checkpoint_generators(checkpoint, path).items()
    }
    if not any(measured.values()):
        raise UserError(f"nothing to measure for {str(path)!r}: {probe.left_out}")
    return measured, checkpoint.step
