"""Checkpoint files seen from outside: their names, which one is newest, and their headers, without torch.

The CLI, the launcher and the viewers find and describe checkpoints through
this module; loading the tensors is `ganterm.training.checkpoint`'s job.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ganterm.config import Config, config_from_json
from ganterm.errors import UserError
from ganterm.run.layout import RunDir, resolve_run

FORMAT = "ganterm-checkpoint"
GENERATOR_FORMAT = "ganterm-generator"
FORMAT_VERSION = 1
LATEST = "latest.safetensors"
_STEP_FILE = re.compile(r"^step_(\d{7,})\.safetensors$")


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit."""


def step_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:07d}.safetensors"


def step_files(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_step_file(run: RunDir) -> Path | None:
    files = step_files(run.checkpoints)
    return files[-1][1] if files else None


def find_checkpoint(argument: str | None, root: Path) -> Path:
    """A checkpoint file given directly, or the newest one of a run (name, path, or latest run)."""
    if argument is not None and Path(argument).expanduser().is_file():
        return Path(argument).expanduser()
    run = resolve_run(argument, root)
    path = latest_step_file(run)
    if path is None:
        raise CheckpointError(f"run {run.name!r} has no checkpoint yet (it writes one every checkpoint.every steps)")
    return path


@contextlib.contextmanager
def opened(path: Path, framework: str) -> Iterator[Any]:
    """safe_open with one clear sentence for each way a file can be wrong."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework=framework, device="cpu") as handle:
            yield handle
    except SafetensorError as error:
        if "incomplete" in str(error) or "not fully covered" in str(error):
            raise CheckpointError(f"checkpoint {str(path)!r} is truncated (an interrupted copy or write?)") from None
        raise CheckpointError(f"{str(path)!r} is not a safetensors file ({error})") from None
    except OSError as error:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {error}") from None


def read_metadata(path: Path) -> dict[str, str]:
    """The validated header of a checkpoint, read without torch."""
    with opened(path, "numpy") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") not in (FORMAT, GENERATOR_FORMAT):
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a ganterm checkpoint")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {version}, newer than this ganterm reads ({FORMAT_VERSION}); "
            "upgrade ganterm"
        )
    return metadata


def read_config(path: Path) -> tuple[Config, int]:
    """The config and step stored in a checkpoint's header."""
    return config_and_step(read_metadata(path), path)


def config_and_step(metadata: dict[str, str], path: Path) -> tuple[Config, int]:
    config = config_from_json(metadata.get("config", "{}"), f"checkpoint {str(path)!r}")
    return config, int(metadata.get("step", "0"))
