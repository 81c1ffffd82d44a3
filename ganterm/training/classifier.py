"""The classifier behind the labelled quality metrics: a small CNN trained once per dataset and cached.

Training it takes 20 s on an idle CPU core and minutes on a busy machine, so
a run's worker does not wait for it: `ClassifierBuild` trains it in a child
process at a lower priority (`python -m ganterm.training.classifier_build CONFIG`)
while the GAN trains, and the first quality point comes after the child is done.
`ganterm eval` and the tests, which cannot go on without it, call
`classifier_for`, which trains it in-process.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from ganterm.run.files import write_atomic
from ganterm.training.data import STACKED_NAME, Dataset, load_mnist5k

CLASSIFIER_EPOCHS = 8
CLASSIFIER_BATCH = 128
FEATURE_SIZE = 28
# Below the GAN's priority, so it takes what training leaves idle, but not so low that a busy machine
# starves it for the whole run: about a quarter of a core against a competing nice-0 process.
BUILD_NICENESS = 5


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


def _cache_key(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update(dataset.tensor[:: max(1, len(dataset) // 512)].contiguous().numpy().tobytes())
    digest.update(str((len(dataset), tuple(dataset.tensor.shape), CLASSIFIER_EPOCHS)).encode())
    return digest.hexdigest()[:16]


def classifier_path(dataset: Dataset, cache: Path) -> Path:
    return cache / "classifiers" / f"{dataset.name}-{_cache_key(dataset)}.safetensors"


def classifier_dataset(dataset: Dataset) -> Dataset:
    """The data whose classifier reads `dataset`: Stacked MNIST's channels are read by the digits' own."""
    return load_mnist5k() if dataset.name == STACKED_NAME else dataset


def _new_classifier(dataset: Dataset) -> FeatureNet:
    with torch.random.fork_rng(devices=[]):  # the same classifier wherever it is trained; the caller's RNG untouched
        torch.manual_seed(0)
        return FeatureNet(dataset.channels, dataset.num_classes)


def cached_classifier(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet | None:
    """The dataset's classifier if the cache holds a sound one; a damaged file is said and left to be rebuilt."""
    path = classifier_path(dataset, cache)
    if not path.exists():
        return None
    try:
        return _load_classifier(dataset, path)
    except Exception as error:  # a damaged cache is rebuilt, not fatal
        log(f"warning: rebuilding the quality classifier cache {path}: {error}")
        return None


def _load_classifier(dataset: Dataset, path: Path) -> FeatureNet:
    model = FeatureNet(dataset.channels, dataset.num_classes)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def classifier_for(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet:
    """The dataset's classifier: from the cache, or trained now (20 s to minutes) and cached."""
    cached = cached_classifier(dataset, cache, log)
    return cached if cached is not None else train_classifier(dataset, cache, log)


def train_classifier(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet:
    """Train the dataset's classifier now, in this process, and cache it."""
    path = classifier_path(dataset, cache)
    model = _new_classifier(dataset)
    log(f"training the quality classifier for {dataset.name} once (cached at {path})")
    _fit_classifier(model, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a per-process temp name: two runs training the same classifier at once each replace it whole
    write_atomic(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return model.eval()


def _fit_classifier(model: FeatureNet, dataset: Dataset) -> None:
    """One-cycle Adam with random ±2 px shifts: over 96% on held-out mnist5k digits in ~20 s of one CPU core.

    Generated digits are rarely centred as neatly as MNIST's, so the shifts make
    the classifier judge their shape rather than their position.
    """
    rng = torch.Generator().manual_seed(0)
    batches_per_epoch = math.ceil(len(dataset) / CLASSIFIER_BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=CLASSIFIER_EPOCHS * batches_per_epoch
    )
    model.train()
    for _ in range(CLASSIFIER_EPOCHS):
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


class ClassifierBuild:
    """A classifier being trained by a child process; `result()` is the model once the child is done.

    The child loads the run's data from its config, trains one thread at a lower priority, and
    writes the cache file atomically, so a file that exists is whole. If the child fails, `failed`
    says so and the run goes on without the labelled metrics: training it in the worker instead
    would stop the GAN for minutes, and `ganterm eval` can measure any checkpoint later.
    A run that ends first leaves the child to finish: the next run on this data finds it cached.
    """

    def __init__(self, dataset: Dataset, cache: Path, config_path: Path) -> None:
        self.dataset, self.cache = dataset, cache
        self.path = classifier_path(dataset, cache)
        self.failed: str | None = None
        # its output (a traceback, if any) goes where the worker's own goes: worker.log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ganterm.training.classifier_build", str(config_path)], stdin=subprocess.DEVNULL
        )

    def result(self, wait_s: float = 0.0) -> FeatureNet | None:
        """The classifier, or None while the child is still training it (or after it failed: see `failed`)."""
        try:
            code = self.process.wait(wait_s) if wait_s else self.process.poll()
        except subprocess.TimeoutExpired:
            return None
        if code is None or self.failed:
            return None
        try:
            return _load_classifier(self.dataset, self.path)
        except Exception as error:  # exited without a loadable file: killed, out of memory, a full disk
            self.failed = f"training the quality classifier in the background failed (exit code {code}: {error})"
            return None
