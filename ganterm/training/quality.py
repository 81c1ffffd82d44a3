"""A run's quality measurement: what is fixed about it, prepared once, and measured at quality steps.

The measures themselves are in `metrics`; `evaluate` measures a checkpoint for
`ganterm eval`. The labelled measures wait for the classifier, which a child
process may still be training (`ClassifierBuild`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganterm.training.classifier import FeatureNet, classifier_dataset, random_feature_net
from ganterm.training.classifier_build import ClassifierBuild
from ganterm.training.classifier_cache import cached_classifier, train_classifier
from ganterm.training.data import STACKED_NAME, TOY_SAMPLE_POINTS, Dataset
from ganterm.training.metrics import (
    CHANNELS,
    PR_NEIGHBOURS,
    STACKED_SAMPLES,
    class_metrics,
    embed,
    frechet_distance,
    precision_recall,
    stacked_metrics,
    toy_metrics,
)
from ganterm.training.sample import generate, latent


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
        """With `config_path` (the run's config), a classifier neither shipped nor cached is trained in the
        background."""
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
