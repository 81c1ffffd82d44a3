"""The classifier behind the labelled quality metrics: a small CNN, and how it is trained.

mnist5k's comes with ganterm; any other dataset's is trained once and cached
(`classifier_cache`), by a child process at a lower priority when a run needs it
(`classifier_build`), so the GAN does not wait for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganterm.training.data import STACKED_NAME, Dataset, load_mnist5k

# Raise it with any change to FeatureNet, new_classifier or fit_classifier: it is part of every classifier's
# cache key, so cached classifiers are trained again, and the shipped one must be too (bench/ship_classifier.py).
CLASSIFIER_RECIPE = 2
CLASSIFIER_EPOCHS = 8
CLASSIFIER_UPDATES = 1200
CLASSIFIER_BATCH = 128
FEATURE_SIZE = 28


class FeatureNet(nn.Module):
    """A small CNN whose 128 penultimate features serve as the embedding."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 7 x 7
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, max(classes, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and class logits of images in [-1, 1], at any size."""
        if images.shape[-1] != FEATURE_SIZE:
            images = F.interpolate(images, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", antialias=True)
        features = self.body(images)
        return features, self.head(features)


# Data read by the classifier of mnist5k's own 28-pixel digits, the one ganterm ships: Stacked MNIST's
# channels, and mnist5k at any image size (FeatureNet resizes what it reads to 28 pixels; it reads 99.3%
# of the digits at 32 and 64 pixels, 99.7% at 28).
READ_AS_DIGITS = ("mnist5k", STACKED_NAME)


def classifier_dataset(dataset: Dataset) -> Dataset:
    """The data whose classifier reads `dataset`."""
    return load_mnist5k() if dataset.name in READ_AS_DIGITS else dataset


def new_classifier(dataset: Dataset) -> FeatureNet:
    with torch.random.fork_rng(devices=[]):  # the same classifier wherever it is trained; the caller's RNG untouched
        torch.manual_seed(0)
        return FeatureNet(dataset.channels, dataset.num_classes)


def classifier_epochs(images: int) -> int:
    """8 epochs, or more on a small dataset, to make at least `CLASSIFIER_UPDATES` updates.

    8 epochs of mnist5k were 320 updates and read 97.0-97.3% of held-out digits, and
    classifiers differing only in their training seed read one Stacked MNIST
    checkpoint's mode KL as 0.073 to 0.097; 1,200 updates (30 epochs) read about
    98.3%. Datasets of about 19,000 images or more make that many in 8 epochs.
    """
    return max(CLASSIFIER_EPOCHS, math.ceil(CLASSIFIER_UPDATES / _batches_per_epoch(images)))


def _batches_per_epoch(images: int) -> int:
    return math.ceil(images / CLASSIFIER_BATCH)


def fit_classifier(model: FeatureNet, dataset: Dataset) -> None:
    """One-cycle Adam with random ±2 px shifts: about 98.3% of held-out mnist5k digits in ~80 s of one core.

    Generated digits are rarely centred as neatly as MNIST's, so the shifts make
    the classifier judge their shape rather than their position.
    """
    rng = torch.Generator().manual_seed(0)
    epochs = classifier_epochs(len(dataset))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=epochs * _batches_per_epoch(len(dataset))
    )
    model.train()
    for _ in range(epochs):
        for indices in torch.randperm(len(dataset), generator=rng).split(CLASSIFIER_BATCH):
            shift_y, shift_x = torch.randint(-2, 3, (2,), generator=rng).tolist()
            images = torch.roll(dataset.batch(indices).contiguous(), (shift_y, shift_x), dims=(2, 3))
            _, logits = model(images)
            loss = F.cross_entropy(logits, dataset.labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def random_feature_net(channels: int) -> FeatureNet:
    """Untrained but fixed: a seeded random CNN embedding for unlabelled images."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return FeatureNet(channels, 1).eval()
