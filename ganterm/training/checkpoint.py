"""safetensors checkpoints: written atomically, validated on load, self-describing.

One file holds G, D, the EMA copy of G, both optimizers and every RNG state
as tensors under prefixes (`generator.`, `discriminator.`, `generator_ema.`,
`optimizer_g.state.<i>.<key>`, `rng.<name>`); the metadata holds the format
version, the step and the full config as JSON but for its secrets
(notify.url), so a checkpoint alone rebuilds the model. `ganterm export`
writes just the EMA generator, un-prefixed, for use with plain
`safetensors.torch.load_file`.

Finding a checkpoint and reading its header without torch is
`ganterm.run.checkpoints`'s job; this module holds the tensors.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganterm.config import Config, without_secrets
from ganterm.run.checkpoints import (
    CHECKSUM,
    FORMAT,
    FORMAT_VERSION,
    GENERATOR_FORMAT,
    CheckpointError,
    config_and_step,
    opened,
    point_latest,
    read_metadata,
    step_files,
    step_path,
)
from ganterm.run.files import write_atomic
from ganterm.run.layout import RunDir

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
    exported: bool = False  # written by `ganterm export`: a generator alone, nothing to train on from

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


def checksum(tensors: Tensors) -> str:
    """CRC-32 of every tensor's name and bytes, in name order; read in place, no copy of the data."""
    crc = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        crc = zlib.crc32(name.encode(), crc)
        if tensor.numel():
            crc = zlib.crc32(tensor.detach().reshape(-1).view(torch.uint8).numpy(), crc)
    return f"crc32:{crc:08x}"


def _save(tensors: Tensors, metadata: dict[str, str], path: Path) -> None:
    """Checksummed, then through the one atomic writer: a crash leaves old or new, a full disk says ENOSPC."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, save(tensors, metadata={**metadata, CHECKSUM: checksum(tensors)}), durable=True)


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
        "config": without_secrets(checkpoint.config).to_json(),  # checkpoints get shared: no webhook in them
        "optimizer_g.param_groups": _flatten_optimizer("optimizer_g", checkpoint.optimizer_g, tensors),
        "optimizer_d.param_groups": _flatten_optimizer("optimizer_d", checkpoint.optimizer_d, tensors),
    }
    path = step_path(run.checkpoints, checkpoint.step)
    _save(tensors, metadata, path)
    point_latest(run.checkpoints, path)
    prune(run.checkpoints, keep)
    return path


def save_generator(path: Path, weights: Tensors, config: Config, step: int) -> None:
    """Just the generator, keys as in its state_dict, for plain load_file users."""
    metadata = {
        "format": GENERATOR_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "step": str(step),
        "config": without_secrets(config).to_json(),
    }
    _save(weights, metadata, path)


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
    stored = metadata.get(CHECKSUM)
    if stored is not None and stored != checksum(tensors):  # files written before checksums have none
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its tensor data does not match the checksum written with it"
        )
    return metadata, tensors


def _section(prefix: str, tensors: Tensors) -> Tensors:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_checkpoint(path: Path) -> Checkpoint:
    metadata, tensors = _read(path)
    config, step = config_and_step(metadata, path)
    if metadata["format"] == GENERATOR_FORMAT:
        return Checkpoint(step, config, generator=tensors, exported=True)
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


def verify(path: Path) -> None:
    """Raise CheckpointError unless the file loads whole and its tensors match their checksum."""
    load_checkpoint(path)


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
