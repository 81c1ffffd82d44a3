"""The trained classifiers: shipped with ganterm (mnist5k's), or cached per dataset under the cache folder.

mnist5k's comes with the package, so the default data's first run measures its
quality at once and every machine reads its samples with the same classifier
(trained on another CPU, or with other threads, the same recipe gives other
weights). Any other dataset's is trained once and cached. `ganterm eval` and the
tests, which cannot go on without one, call `classifier_for`, which trains it
in-process when neither holds one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save

from ganterm.run.files import write_atomic
from ganterm.training.classifier import (
    CLASSIFIER_RECIPE,
    FeatureNet,
    classifier_epochs,
    fit_classifier,
    new_classifier,
)
from ganterm.training.data import Dataset

# laid out as a cache is: the package's training/classifiers/ holds the shipped ones, named as cached ones are
SHIPPED = Path(__file__).parent


def _cache_key(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update(dataset.tensor[:: max(1, len(dataset) // 512)].contiguous().numpy().tobytes())
    sizes = (len(dataset), tuple(dataset.tensor.shape), classifier_epochs(len(dataset)), CLASSIFIER_RECIPE)
    digest.update(str(sizes).encode())
    return digest.hexdigest()[:16]


def classifier_path(dataset: Dataset, cache: Path) -> Path:
    return cache / "classifiers" / f"{dataset.name}-{_cache_key(dataset)}.safetensors"


def cached_classifier(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet | None:
    """The dataset's classifier if ganterm ships it or the cache holds a sound one; a damaged file is said."""
    shipped, cached = classifier_path(dataset, SHIPPED), classifier_path(dataset, cache)
    for path in (shipped, cached):
        if path.exists():
            try:
                return load_classifier(dataset, path)
            except Exception as error:  # a damaged file is trained again, not fatal
                if path == shipped:
                    log(f"warning: cannot read the quality classifier that came with ganterm ({path}: {error}); "
                        f"reinstall ganterm to mend it; meanwhile one is trained into {cached.parent}")  # fmt: skip
                else:
                    log(f"warning: rebuilding the quality classifier cache {path}: {error}")
    return None


def load_classifier(dataset: Dataset, path: Path) -> FeatureNet:
    model = FeatureNet(dataset.channels, dataset.num_classes)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def classifier_for(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet:
    """The dataset's classifier: shipped, from the cache, or trained now (a minute or more) and cached."""
    cached = cached_classifier(dataset, cache, log)
    return cached if cached is not None else train_classifier(dataset, cache, log)


def train_classifier(dataset: Dataset, cache: Path, log: Callable[[str], None] = print) -> FeatureNet:
    """Train the dataset's classifier now, in this process, and cache it."""
    path = classifier_path(dataset, cache)
    model = new_classifier(dataset)
    log(f"training the quality classifier for {dataset.name} once (cached at {path})")
    fit_classifier(model, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a per-process temp name: two runs training the same classifier at once each replace it whole
    write_atomic(path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return model.eval()
