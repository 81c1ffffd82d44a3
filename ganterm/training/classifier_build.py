"""`python -m ganterm.training.classifier_build CONFIG`: the child process that `ClassifierBuild` starts.

An entry module of its own, so the child loads what training the classifier
needs and nothing of the worker's (run as `-m`, classifier.py itself would be
imported twice: once as `__main__`, once by name).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import torch

from ganterm.config import load_config
from ganterm.logline import log
from ganterm.training.classifier import BUILD_NICENESS, cached_classifier, classifier_path, train_classifier
from ganterm.training.data import STACKED_NAME, cache_root, load_dataset, load_mnist5k


def main(argv: list[str] | None = None) -> int:
    """Train and cache the classifier of the data a run config names; what `ClassifierBuild` runs.

    Two first runs on the same data share the work: the second waits on the first one's lock, then
    finds the file.
    """
    (config_path,) = argv if argv is not None else sys.argv[1:]
    os.nice(BUILD_NICENESS)
    torch.set_num_threads(1)  # one core at most: the GAN's loop keeps the rest
    config = load_config(Path(config_path))
    if config.data.name == STACKED_NAME:  # read by the digits' classifier: no need to build 60,000 triples
        dataset = load_mnist5k()
    else:
        dataset = load_dataset(config, progress=lambda message: None)
    cache = cache_root(config)
    lock = classifier_path(dataset, cache).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        # another first run may have built it meanwhile; a damaged file the worker has already said
        if cached_classifier(dataset, cache, log=lambda message: None) is None:
            train_classifier(dataset, cache, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
