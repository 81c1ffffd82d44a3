"""The fault suite: kill -9 and full disks at many points of real worker processes, then `ganterm train --resume`.

Each trial starts a worker through tests/fault_worker.py on a run that
checkpoints off the logging rhythm (checkpoint.every=7, log.every=5, keep=3,
so pruning happens), stops it at one point (inside the Nth checkpoint write,
with earlier checkpoints on disk; inside a write the `checkpoint` command
asked for; at a plain step; at a full disk), resumes it with the real CLI, and
asserts the promises of the run record:

- every step is in metrics.jsonl exactly once, 1..total, in order;
- the sample grids are those of the schedule, each with its event;
- no checkpoint whose event was written is lost to the fault, and the
  resume went on from the newest checkpoint intact at the kill;
- every file in the run directory is readable by a viewer.

The default variant tries a few points; `-m slow` tries them all.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import tomllib
from PIL import Image

from ganterm.run.checkpoints import CheckpointError, step_files
from ganterm.run.jsonl import append_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import effective_state, read_status
from ganterm.training.checkpoint import load_checkpoint
from tests import fault_worker
from tests.conftest import run_cli, wait_for

TRAIN = [
    "--data", "ring", "--set", "model.width=16", "--set", "model.z_dim=8", "--set", "train.batch_size=32",
    "--set", "train.device=cpu", "--set", "quality.every=0", "--set", "log.every=5",
    "--set", "checkpoint.every=7", "--set", "checkpoint.keep=3", "--set", "sample.every=10",
]  # fmt: skip
EVERY_SAMPLE = 10
MORE = 12  # steps the resumed run trains past the newest row of the killed one


@dataclass(frozen=True)
class Fault:
    """One way to stop a worker: `faults` for tests/fault_worker.py, and how to tell it got there."""

    name: str
    faults: tuple[str, ...] = ()
    hangs: bool = True  # waits in a checkpoint write to be killed (else: killed at `kill_at`, or fails alone)
    kill_at: int = 0
    command: bool = False  # send the `checkpoint` command once it trains


def _in_write(n: int, phase: str) -> Fault:
    return Fault(f"checkpoint{n}-{phase}", ("--hang-checkpoint", f"{n}:{phase}"))


def _commanded(phase: str) -> Fault:
    return Fault(f"command-{phase}", ("--hang-commanded", phase), command=True)


DISK_FULL_METRICS = Fault("disk-full-rows", ("--disk-full-metrics-at", "23"), hangs=False)
DISK_FULL_CHECKPOINT = Fault("disk-full-checkpoint", ("--disk-full-checkpoint", "3"), hangs=False)
FAST = [_in_write(3, "during"), _commanded("after"), DISK_FULL_CHECKPOINT]
SLOW = [
    *(_in_write(n, phase) for n in (1, 2, 3, 4) for phase in fault_worker.PHASES),
    *(_commanded(phase) for phase in fault_worker.PHASES),
    *(Fault(f"step-{s}", hangs=False, kill_at=s) for s in (3, 12, 30, 64)),
    DISK_FULL_METRICS,
    DISK_FULL_CHECKPOINT,
]


def _step(run: RunDir) -> int:
    return int((read_status(run) or {}).get("step", 0))


def _newest_intact(run: RunDir) -> int | None:
    for step, path in reversed(step_files(run.checkpoints)):
        try:
            load_checkpoint(path)
        except CheckpointError:
            continue
        return step
    return None


def _stop(run: RunDir, fault: Fault, marker: Path) -> None:
    """Start the faulty worker and bring it down: kill -9 where the fault says, or let the fault end it."""
    total = 1_000_000 if fault.hangs or fault.kill_at else 200
    config = fault_worker.resolved_config(run.path.parent.parent, "--steps", str(total), *TRAIN)
    worker = fault_worker.start(run.path, [*fault.faults, "--marker", str(marker)], config=config)
    try:
        if fault.command:
            wait_for(lambda: _step(run) >= 15, timeout=120, what="steps before the command")
            append_jsonl(run.control, {"t": time.time(), "cmd": "checkpoint", "id": "fault-suite"})
        if fault.hangs:
            wait_for(marker.exists, timeout=120, what=f"the worker to stop at {fault.name}")
        elif fault.kill_at:
            wait_for(lambda: _step(run) >= fault.kill_at, timeout=120, what=f"step {fault.kill_at}")
        else:
            assert worker.wait(timeout=120) != 0
            assert "no space left on the disk while writing" in read_status(run)["error"]
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert effective_state(read_status(run)) in ("lost", "failed")


def _rows(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed: a viewer must be able to read each one."""
    lines = path.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines), f"a torn line in {path.name}"
    return [orjson.loads(line) for line in lines]


def _check_record(run: RunDir, total: int) -> None:
    """The run record's promises after a finished resume to `total`."""
    steps = [row["step"] for row in _rows(run.metrics) if "loss_d" in row]
    wrong = sorted(set(range(1, total + 1)) ^ set(steps))
    assert steps == list(range(1, total + 1)), f"steps missing or repeated: {wrong or 'order'}"
    events = _rows(run.events)
    assert events[-1]["kind"] == "status" and events[-1]["state"] == "finished" and events[-1]["step"] == total
    expected_samples = sorted({s for s in range(EVERY_SAMPLE, total + 1, EVERY_SAMPLE)} | {total})
    assert [step for step, _ in run.sample_steps()] == expected_samples
    sampled = {e["step"] for e in events if e["kind"] == "sample"}
    for step, path in run.sample_steps():
        assert step in sampled, f"sample {path.name} has no event"
        with Image.open(path) as image:
            image.load()
    assert all(e["step"] <= total for e in events if e["kind"] in ("sample", "checkpoint"))
    status = read_status(run)
    assert status["state"] == "finished" and status["step"] == total
    tomllib.loads(run.config.read_text())
    files = step_files(run.checkpoints)
    assert files and files[-1][0] == total and len(files) <= 3
    for _, path in files:
        load_checkpoint(path)
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == total
    assert not list(run.checkpoints.glob(".*.tmp"))
    for abandoned in run.checkpoints.glob("abandoned-*"):  # set aside, still readable
        for path in abandoned.iterdir():
            assert path.name.startswith("step_")
    listing = run_cli(run.path.parent.parent, "runs")
    assert listing.returncode == 0 and run.name in listing.stdout, listing.stderr


def _trial(root: Path, fault: Fault) -> dict:
    run = RunDir(root / "runs" / fault.name)
    started = time.monotonic()
    _stop(run, fault, root / f"{fault.name}.hanging")
    used = _newest_intact(run)
    promised = [e["step"] for e in _rows(run.events) if e["kind"] == "checkpoint"]  # written, by the record
    if promised:
        assert used is not None and used >= max(promised), f"checkpoint {max(promised)} was lost; newest left: {used}"
    last_row = max((row["step"] for row in _rows(run.metrics) if "step" in row), default=0)
    total = last_row + MORE
    before = run.log.stat().st_size
    result = run_cli(root, "train", "--resume", fault.name, "--steps", str(total), "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    resumed = run.log.read_text()[before:]
    if used is None:
        assert "resumed from" not in resumed, resumed
    else:
        assert f"at step {used}\n" in resumed, (used, resumed)
    _check_record(run, total)
    return {"fault": fault.name, "resumed_at": used, "total": total, "seconds": round(time.monotonic() - started, 1)}


@pytest.mark.parametrize("fault", FAST, ids=lambda f: f.name)
def test_the_run_record_survives(tmp_path: Path, fault: Fault):
    _trial(tmp_path, fault)


@pytest.mark.slow
def test_the_run_record_survives_every_fault_point(tmp_path: Path):
    results = [_trial(tmp_path, fault) for fault in SLOW]
    for result in results:
        print(result)
    assert len(results) == len(SLOW)
