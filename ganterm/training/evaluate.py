"""`ganterm eval`: a checkpoint's generators measured by the run's own quality probe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from ganterm.errors import UserError
from ganterm.training.checkpoint import Checkpoint, load_checkpoint, load_weights
from ganterm.training.data import cache_root, load_dataset
from ganterm.training.models import build_generator
from ganterm.training.quality import QualityProbe


def checkpoint_generators(checkpoint: Checkpoint, path: Path) -> dict[str, nn.Module]:
    """The generators a checkpoint holds, by name, the EMA one first: the papers measure the raw one."""
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
