"""A real worker with faults installed: how the crash-safety tests reach inside a worker process.

    python -m tests.fault_worker [FAULTS] -- RUN [--resume CKPT] [--config PATH]

(`start` below runs it the way the launcher runs a worker)

installs the faults asked for by patching ganterm from the outside, then runs
`ganterm.training.worker.main` on the rest. The library holds no fault
switches of its own. Faults:

- `--nan-at 40,41`: those steps' losses are NaN (the trainer must skip them);
- `--hang-checkpoint N:PHASE`: the Nth checkpoint write of this process (1 is
  the first; the `checkpoint` command's count too) stops and waits to be
  killed at PHASE: `before` (rows flushed, no file yet), `during` (half the
  temp file written), `renaming` (temp file complete, not yet renamed),
  `after` (file and `latest` in place, its event not yet written). With
  `--marker PATH`, PATH is created once it waits there;
- `--hang-commanded PHASE`: the same, in a write the `checkpoint` command asked for;
- `--disk-full-checkpoint N`: the Nth checkpoint write and every later one meet a full disk;
- `--disk-full-metrics-at STEP`: writing a metrics row of STEP or later meets a full disk;
- `--disk-full-from STEP`: from the first metrics row of STEP on, every write
  of the run (rows, events, status.json, checkpoints) meets a full disk.
"""

from __future__ import annotations

import argparse
import builtins
import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganterm.run import files, jsonl
from ganterm.training import loop, trainer, worker

Setter = Callable[[Any, str, Any], None]
HANG_SECONDS = 3600.0
PHASES = ("before", "during", "renaming", "after")
REPO = str(Path(__file__).resolve().parent.parent)  # so `-m tests.fault_worker` imports from any folder


def disk_full(path: Path | str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def install_nan(steps: set[int], setattr: Setter = setattr) -> None:
    """Make the losses of `steps` NaN, the way a diverging model would."""
    poisoned = {"now": False}
    train_step = trainer.Trainer.train_step
    d_loss, g_loss = trainer.discriminator_loss, trainer.generator_loss

    def step(self: trainer.Trainer) -> None:
        poisoned["now"] = self.step + 1 in steps
        train_step(self)

    def poison(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda *args: loss(*args) * (float("nan") if poisoned["now"] else 1.0)

    setattr(trainer.Trainer, "train_step", step)
    setattr(trainer, "discriminator_loss", poison(d_loss))
    setattr(trainer, "generator_loss", poison(g_loss))


class CheckpointFaults:
    """Counts checkpoint writes and acts inside the Nth one."""

    def __init__(
        self, hang: tuple[int, str] | None, full: int | None, marker: Path | None, commanded: str | None = None
    ) -> None:
        self.count = 0
        self.hang, self.full, self.marker = hang, full, marker
        self.commanded = commanded  # the phase to stop at in a write the `checkpoint` command asked for
        self.by_command = False

    def install(self, setattr: Setter = setattr) -> None:
        save, real_open, real_replace = loop.save_checkpoint, builtins.open, os.replace
        write_checkpoint = loop.write_checkpoint

        def write_checkpoint_(*args: Any, **kwargs: Any) -> Path | None:
            self.by_command = (args[3] if len(args) > 3 else kwargs.get("command")) is not None
            return write_checkpoint(*args, **kwargs)

        def save_checkpoint(*args: Any, **kwargs: Any) -> Path:
            self.count += 1
            self.wait_if("before")
            path = save(*args, **kwargs)
            self.wait_if("after")
            return path

        def open_(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            if not self.writing_checkpoint(path):
                return handle
            return _Handle(handle, self, path)

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if self.writing_checkpoint(dst):
                self.wait_if("renaming")
            real_replace(src, dst, *args, **kwargs)

        setattr(loop, "save_checkpoint", save_checkpoint)
        setattr(loop, "write_checkpoint", write_checkpoint_)
        setattr(files, "open", open_)  # a module global shadows the builtin in ganterm.run.files only
        setattr(os, "replace", replace)

    @staticmethod
    def writing_checkpoint(path: Any) -> bool:
        name = Path(path).name
        return name.startswith((".step_", "step_")) and ".safetensors" in name

    def waits_at(self, phase: str) -> bool:
        return self.hang == (self.count, phase) or (self.by_command and self.commanded == phase)

    def wait_if(self, phase: str) -> None:
        if self.waits_at(phase):
            if self.marker is not None:
                self.marker.write_text(phase)
            time.sleep(HANG_SECONDS)


class _Handle:
    """A checkpoint's temp file that fills the disk or stops half-written, as asked."""

    def __init__(self, handle: Any, faults: CheckpointFaults, path: Any) -> None:
        self._handle, self._faults, self._path = handle, faults, path

    def write(self, data: bytes) -> int:
        if self._faults.full is not None and self._faults.count >= self._faults.full:
            self._handle.write(bytes(data)[: len(data) // 2])
            self._handle.flush()
            raise disk_full(self._path)
        if self._faults.waits_at("during"):
            self._handle.write(bytes(data)[: len(data) // 2])
            self._handle.flush()
            self._faults.wait_if("during")
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def install_disk_full(metrics_at: int | None, everything_from: int | None, setattr: Setter = setattr) -> None:
    """A disk that fills up when the metrics reach a step: for metrics alone, or for every write after."""
    full = {"now": False}
    write, write_atomic = jsonl.JsonlWriter.write, files.write_atomic

    def write_rows(self: jsonl.JsonlWriter, records: Any) -> None:
        records = list(records)
        steps = [int(r.get("step", 0)) for r in records if "step" in r]
        is_metrics = self.path.name == "metrics.jsonl"
        if is_metrics and steps and everything_from is not None and max(steps) >= everything_from:
            full["now"] = True
        if full["now"] or (is_metrics and steps and metrics_at is not None and max(steps) >= metrics_at):
            raise disk_full(self.path)
        write(self, records)

    def atomic(path: Path, data: Any, durable: bool = False) -> None:
        if full["now"]:
            raise disk_full(path)
        write_atomic(path, data, durable)

    setattr(jsonl.JsonlWriter, "write", write_rows)
    importers = [m for m in list(sys.modules.values()) if getattr(m, "write_atomic", None) is write_atomic]
    for module in importers:  # ganterm.run.files and every module that imported its writer by name
        setattr(module, "write_atomic", atomic)


def _steps(text: str) -> set[int]:
    return {int(v) for v in text.split(",") if v.strip()}


def _hang(text: str) -> tuple[int, str]:
    count, _, phase = text.partition(":")
    if phase not in PHASES:
        raise argparse.ArgumentTypeError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
    return int(count), phase


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m tests.fault_worker")
    parser.add_argument("--nan-at", type=_steps, default=set())
    parser.add_argument("--hang-checkpoint", type=_hang, default=None)
    parser.add_argument("--hang-commanded", choices=PHASES, default=None)
    parser.add_argument("--disk-full-checkpoint", type=int, default=None)
    parser.add_argument("--disk-full-metrics-at", type=int, default=None)
    parser.add_argument("--disk-full-from", type=int, default=None)
    parser.add_argument("--marker", type=Path, default=None)
    args = parser.parse_args(argv[:split])
    if args.nan_at:
        install_nan(args.nan_at)
    if args.hang_checkpoint or args.disk_full_checkpoint or args.hang_commanded:
        CheckpointFaults(args.hang_checkpoint, args.disk_full_checkpoint, args.marker, args.hang_commanded).install()
    if args.disk_full_metrics_at is not None or args.disk_full_from is not None:
        install_disk_full(args.disk_full_metrics_at, args.disk_full_from)
    return worker.main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())


def _pythonpath() -> str:
    """This checkout importable from any folder, after whatever PYTHONPATH already puts first."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), REPO) if p)


def resolved_config(cwd: Path, *train_args: str) -> str:
    """The config.toml `ganterm train ARGS` would write, from its --dry-run (no torch, under a second)."""
    result = subprocess.run(
        [sys.executable, "-m", "ganterm", "train", "--dry-run", *train_args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
    )
    return result.stdout


def start(run: Path, faults: list[str], *worker_args: str, config: str | None = None) -> subprocess.Popen:
    """This launcher on `run` in a session of its own, logging to worker.log as `ganterm train` would.

    The caller reaps it (`wait()`): until then a killed worker is a zombie, which still answers kill(pid, 0).
    """
    run.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (run / "config.toml").write_text(config, encoding="utf-8")
    with open(run / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fault_worker", *faults, "--", str(run), *worker_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": _pythonpath(), "PYTHONUNBUFFERED": "1"},
        )
