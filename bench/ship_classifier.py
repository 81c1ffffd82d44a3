"""Train the mnist5k classifier that ships with ganterm, and say what it reads and what it cost.

Run it after raising `CLASSIFIER_RECIPE` (any change to how the classifier is
built or trained): it trains on one thread, as a run's background build does,
writes `ganterm/training/classifiers/mnist5k-<key>.safetensors`, and removes
the shipped files of earlier recipes. Commit the result.

    python bench/ship_classifier.py
"""

from __future__ import annotations

import hashlib
import time

import torch

from ganterm.training.classifier_cache import SHIPPED, classifier_path, train_classifier
from ganterm.training.data import load_mnist5k
from ganterm.training.metrics import embed


def main() -> None:
    torch.set_num_threads(1)
    digits = load_mnist5k()
    target = classifier_path(digits, SHIPPED)
    started = time.perf_counter()
    net = train_classifier(digits, SHIPPED)
    seconds = time.perf_counter() - started
    for earlier in target.parent.glob("mnist5k-*.safetensors"):
        if earlier != target:
            earlier.unlink()
            print(f"removed {earlier.name} (an earlier recipe's)")
    _, probabilities = embed(net, digits.batch(torch.arange(len(digits))))
    accuracy = (probabilities.argmax(1) == digits.labels).double().mean().item()
    digest = hashlib.md5(target.read_bytes()).hexdigest()
    print(f"{target}: {target.stat().st_size / 1e6:.2f} MB, md5 {digest}")
    print(f"trained in {seconds:.0f} s on one thread; reads {accuracy:.2%} of the 5,000 digits it was trained on")


if __name__ == "__main__":
    main()
