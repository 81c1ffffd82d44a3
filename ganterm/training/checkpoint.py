"""safetensors checkpoints: written atomically, validated on load, self-describing.

One file holds G, D, the EMA copy of G, both optimizers and every RNG state
as tensors under prefixes (`generator.`, `discriminator.`, `generator_ema.`,
`optimizer_g.state.<i>.<key>`, `rng.<name>`); the metadata holds the format
version, the step and the full config as JSON, so a checkpoint alone rebuilds
the model. `ganterm export` writes just the EMA generator, un-prefixed, for
use with plain `safetensors.torch.load_file`.

Finding a checkpoint and reading its header without torch is
`ganterm.run.checkpoints`'s job; this module holds the tensors.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganterm.config import Config
from ganterm.run.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    GENERATOR_FORMAT,
    LATEST,
    CheckpointError,
    config_and_step,
    opened,
    read_metadata,
    step_files,
    step_path,
)
from ganterm.run.layout import RunDir
from ganterm.training import faults

Tensors = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    step: int
    config: Config
    generator: Tensors
    discriminator: Tensors = field(default_factory=dict)
    generator_ema: Tensors = field(default_factory=dict)
    optimizer_g: dict = field(default_factory=dict)
    optimizer_d: dict = field(default_factory=dict)
    rng: Tensors = field(default_factory=dict)
    world_size: int = 1  # processes that trained it; resuming with as many is bit-exact on the CPU

    @property
    def sampling_weights(self) -> Tensors:
        """The EMA generator when there is one: it makes the better samples."""
        return self.generator_ema or self.generator


def _flatten_optimizer(prefix: str, state: dict, tensors: Tensors) -> str:
    """Tensors of an optimizer state go into the file; its param groups into JSON."""
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.state.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return json.dumps(state["param_groups"])


def _unflatten_optimizer(prefix: str, tensors: Tensors, groups_json: str) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + ".state."):
            index, key = name[len(prefix) + 7 :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": json.loads(groups_json)}


def _prefixed(prefix: str, tensors: Tensors) -> Tensors:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in tensors.items()}


def _durable_save(tensors: Tensors, metadata: dict[str, str], path: Path) -> None:
    """Temp file, fsync, rename, fsync the folder: a crash leaves old or new, never half."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # save_file creates 0600; a shared run directory wants others to read
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        faults.pause_if("slow_checkpoint")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(run: RunDir, checkpoint: Checkpoint, keep: int) -> Path:
    """Write `checkpoints/step_N.safetensors`, point `latest` at it, keep the newest `keep`."""
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    tensors: Tensors = {}
    tensors |= _prefixed("generator", checkpoint.generator)
    tensors |= _prefixed("discriminator", checkpoint.discriminator)
    tensors |= _prefixed("generator_ema", checkpoint.generator_ema)
    tensors |= _prefixed("rng", checkpoint.rng)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "step": str(checkpoint.step),
        "world_size": str(checkpoint.world_size),
        "config": checkpoint.config.to_json(),
        "optimizer_g.param_groups": _flatten_optimizer("optimizer_g", checkpoint.optimizer_g, tensors),
        "optimizer_d.param_groups": _flatten_optimizer("optimizer_d", checkpoint.optimizer_d, tensors),
    }
    path = step_path(run.checkpoints, checkpoint.step)
    _durable_save(tensors, metadata, path)
    _point_latest(run.checkpoints, path)
    prune(run.checkpoints, keep)
    return path


def save_generator(path: Path, weights: Tensors, config: Config, step: int) -> None:
    """Just the generator, keys as in its state_dict, for plain load_file users."""
    metadata = {
        "format": GENERATOR_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "step": str(step),
        "config": config.to_json(),
    }
    _durable_save({k: v.detach().cpu().contiguous() for k, v in weights.items()}, metadata, path)


def _point_latest(directory: Path, target: Path) -> None:
    link = directory / LATEST
    tmp = directory / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)


def prune(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` step files, and temp files of killed writes."""
    for _, path in step_files(directory)[:-keep]:
        path.unlink(missing_ok=True)
    for tmp in directory.glob(".*.tmp"):  # one worker per run (lock), so any left is from a killed one
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[dict[str, str], Tensors]:
    metadata = read_metadata(path)
    with opened(path, "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is no dict
    return metadata, tensors


def _section(prefix: str, tensors: Tensors) -> Tensors:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_checkpoint(path: Path) -> Checkpoint:
    metadata, tensors = _read(path)
    config, step = config_and_step(metadata, path)
    if metadata["format"] == GENERATOR_FORMAT:
        return Checkpoint(step, config, generator=tensors)
    return Checkpoint(
        step=step,
        config=config,
        generator=_section("generator", tensors),
        discriminator=_section("discriminator", tensors),
        generator_ema=_section("generator_ema", tensors),
        optimizer_g=_unflatten_optimizer("optimizer_g", tensors, metadata["optimizer_g.param_groups"]),
        optimizer_d=_unflatten_optimizer("optimizer_d", tensors, metadata["optimizer_d.param_groups"]),
        rng=_section("rng", tensors),
        world_size=int(metadata.get("world_size", "1")),
    )


def load_weights(module: torch.nn.Module, weights: Tensors, path: Path, what: str) -> None:
    """load_state_dict with a clear message when the shapes or names do not fit."""
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        detail = str(error).splitlines()
        reason = next((line.strip() for line in detail[1:] if line.strip()), detail[0] if detail else "")
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit this {what}: it was made for another architecture ({reason})"
        ) from None


def load_generator(path: Path) -> tuple[torch.nn.Module, Checkpoint]:
    """The generator that makes a checkpoint's samples (the EMA one when there is one), ready to run."""
    from ganterm.training.models import build_generator

    checkpoint = load_checkpoint(path)
    generator = build_generator(checkpoint.config)
    load_weights(generator, checkpoint.sampling_weights, path, "generator")
    return generator, checkpoint
