"""Checkpoint files seen from outside: their names, which one is newest, and their headers, without torch.

The CLI, the launcher and the viewers find and describe checkpoints through
this module; loading the tensors is `ganterm.training.checkpoint`'s job.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ganterm.config import Config, config_from_json
from ganterm.errors import UserError
from ganterm.run.jsonl import read_jsonl, valid_event
from ganterm.run.layout import RunDir, resolve_run
from ganterm.run.status import read_status

FORMAT = "ganterm-checkpoint"
GENERATOR_FORMAT = "ganterm-generator"
FORMAT_VERSION = 1
LATEST = "latest.safetensors"
CHECKSUM = "checksum"  # metadata key: "crc32:<hex>" over the tensors' bytes, in sorted name order
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


def point_latest(directory: Path, target: Path) -> None:
    """Point `latest.safetensors` at `target` (a file in `directory`), replacing the link atomically."""
    link = directory / LATEST
    tmp = directory / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)


def latest_step_file(run: RunDir) -> Path | None:
    """The newest step file by name, intact or not; `newest_intact` is the one to load."""
    files = step_files(run.checkpoints)
    return files[-1][1] if files else None


def newest_intact(
    run: RunDir, check: Callable[[Path], object] | None = None, warn: Callable[[str], None] = lambda message: None
) -> Path | None:
    """The newest step file that passes `check` (the header, by default); each one passed over is one `warn` line.

    The header check needs no torch and catches a truncated or garbled file;
    `ganterm.training.checkpoint.verify` also checks the tensors' checksum.
    """
    check = check or read_metadata
    first_error: CheckpointError | None = None
    for _, path in reversed(step_files(run.checkpoints)):
        try:
            check(path)
        except CheckpointError as error:
            first_error = first_error or error
            continue
        if first_error is not None:
            warn(f"warning: {first_error}; using the newest intact checkpoint instead: {str(path)!r}")
        return path
    if first_error is not None:
        raise first_error
    return None


def find_checkpoint(
    argument: str | None,
    root: Path,
    check: Callable[[Path], object] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> Path:
    """A checkpoint file given directly, or the newest intact one of a run (name, path, or latest run).

    A file named directly is taken as it is: falling back is only for a run, where the user did not pick the file.
    """
    if argument is not None and Path(argument).expanduser().is_file():
        return Path(argument).expanduser()
    run = resolve_run(argument, root)
    if (read_status(run) or {}).get("loop") == "own":
        return _loop_checkpoint(run, check)
    path = newest_intact(run, check, warn)
    if path is None:
        raise CheckpointError(f"run {run.name!r} has no checkpoint yet (it writes one every checkpoint.every steps)")
    return path


def loop_checkpoints(run: RunDir) -> list[tuple[int, Path | None]]:
    """What a user's loop saved through `ganterm.Run`'s `on_checkpoint`, in the order saved: step and file, if said.

    The files are the loop's own, wherever it put them; events.jsonl names them (relative to the run when inside it).
    """
    saved: list[tuple[int, Path | None]] = []
    for event in read_jsonl(run.events):
        if valid_event(event) and event["kind"] == "checkpoint":
            path = event.get("path")
            saved.append((int(event["step"]), run.path / path if path else None))
    return saved


def _loop_checkpoint(run: RunDir, check: Callable[[Path], object] | None) -> Path:
    """The newest checkpoint of a user's loop that ganterm can build a generator from; else one sentence why not."""
    saved = [(step, path) for step, path in loop_checkpoints(run) if path is not None and path.is_file()]
    if not saved:
        raise CheckpointError(
            f"run {run.name!r} is fed by its own training loop, which has saved no checkpoint file through "
            "ganterm.Run's on_checkpoint (run.checkpoint() or `ganterm checkpoint`) that is still there"
        )
    for _, path in reversed(saved):
        try:
            read_metadata(path)
        except CheckpointError:
            continue
        (check or read_metadata)(path)
        return path
    step, path = saved[-1]
    raise CheckpointError(
        f"run {run.name!r} is fed by its own training loop, whose checkpoints (the newest: {str(path)!r}, "
        f"step {step}) hold the loop's own networks, not a ganterm generator; sample it from the loop instead "
        f"(ganterm snapshot {run.name}, or run.images in the loop)"
    )


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


def read_resumable(path: Path) -> tuple[Config, int]:
    """The config and step of a checkpoint training can go on from; one sentence for any other file."""
    metadata = read_metadata(path)
    if metadata["format"] == GENERATOR_FORMAT:
        raise CheckpointError(exported_generator(path))
    return config_and_step(metadata, path)


def exported_generator(path: Path) -> str:
    return (
        f"{str(path)!r} is an exported generator (written by ganterm export): ganterm sample can use it, "
        "but training cannot resume from it, since it holds no discriminator or optimizer state; "
        "resume from a file in the run's checkpoints/ folder"
    )


def config_and_step(metadata: dict[str, str], path: Path) -> tuple[Config, int]:
    config = config_from_json(metadata.get("config", "{}"), f"checkpoint {str(path)!r}")
    return config, int(metadata.get("step", "0"))
