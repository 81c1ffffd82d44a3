"""The classifier trained in the background: `ClassifierBuild` in the worker, `main` in its child process.

Training it takes about 80 s on an idle CPU core and minutes on a busy machine, so
a run's worker does not wait for it: `ClassifierBuild` starts
`python -m ganterm.training.classifier_build CONFIG` at a lower priority while
the GAN trains, and the first quality point comes after the child is done.
The child imports what training the classifier needs and nothing of the
worker's.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import torch

from ganterm.config import load_config
from ganterm.logline import log
from ganterm.training.classifier import READ_AS_DIGITS, FeatureNet
from ganterm.training.classifier_cache import cached_classifier, classifier_path, load_classifier, train_classifier
from ganterm.training.data import Dataset, cache_root, load_dataset, load_mnist5k

# Below the GAN's priority, so it takes what training leaves idle, but not so low that a busy machine
# starves it for the whole run: about a quarter of a core against a competing nice-0 process.
BUILD_NICENESS = 5


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
            return load_classifier(self.dataset, self.path)
        except Exception as error:  # exited without a loadable file: killed, out of memory, a full disk
            self.failed = f"training the quality classifier in the background failed (exit code {code}: {error})"
            return None


def main(argv: list[str] | None = None) -> int:
    """Train and cache the classifier of the data a run config names; what `ClassifierBuild` runs.

    Two first runs on the same data share the work: the second waits on the first one's lock, then
    finds the file.
    """
    (config_path,) = argv if argv is not None else sys.argv[1:]
    os.nice(BUILD_NICENESS)
    torch.set_num_threads(1)  # one core at most: the GAN's loop keeps the rest
    config = load_config(Path(config_path))
    if config.data.name in READ_AS_DIGITS:  # no need to build 60,000 triples, or resize, to train on the digits
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
