"""The training loop: steps, and between them a fixed list of maintenance jobs.

Like StyleGAN2-ADA's loop, `fit` trains and, between steps, runs the same
commented list every time: control commands, metric rows, the non-finite
guard, samples, checkpoints, quality. Everything it records goes through the
run's `Recorder`, the same one `ganterm.Run` uses for a user's own loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ganterm.run.control import Command
from ganterm.run.recorder import Recorder
from ganterm.run.schema import stats_line
from ganterm.training.checkpoint import save_checkpoint
from ganterm.training.quality import QualityProbe
from ganterm.training.sample import save_png
from ganterm.training.trainer import Trainer

PAUSE_POLL_SECONDS = 0.2
OTHERS_WAIT_WORTH_SAYING = 0.5  # seconds
FINAL_QUALITY_WAIT_S = 900.0  # a classifier still not trained after this is taken to be stuck


@dataclass
class Schedule:
    """How far to train, and what the run already holds: where `fit` starts from and stops."""

    total_steps: int
    last_checkpoint: int = -1  # the step of the newest checkpoint on disk
    quality: QualityProbe | None = None
    last_quality: int = -1  # the step of the newest quality measurement


def write_sample(trainer: Trainer, recorder: Recorder, command: Command | None = None) -> Path | None:
    def save() -> Path:
        path = recorder.run.sample_path(trainer.step)
        save_png(trainer.sample_image(), path)
        return path

    return recorder.sample(trainer.step, save, command)


def write_checkpoint(
    trainer: Trainer, recorder: Recorder, schedule: Schedule, command: Command | None = None
) -> Path | None:
    """The recorder writes the pending rows first: a checkpoint is never ahead of metrics.jsonl.

    Every rank of a distributed run calls this (each one's noise stream goes in); rank 0 writes.
    """
    keep = trainer.config.checkpoint.keep
    state = trainer.checkpoint()
    path = recorder.checkpoint(trainer.step, lambda: save_checkpoint(recorder.run, state, keep), command)
    schedule.last_checkpoint = trainer.step
    return path


def take_in_classifier(recorder: Recorder, schedule: Schedule, step: int, wait_s: float = 0.0) -> bool:
    """Whether quality can be measured now; `fit` asks at every pass, paused too, waiting up to `wait_s`.

    A classifier trained in the background is taken in the moment its child ends:
    the child is reaped (no `<defunct>` process for the rest of a pause) and
    status.json's `waiting_for` is cleared, not left for the next quality step.
    """
    probe = schedule.quality
    if probe is None:
        return False
    if probe.waiting_for:
        if not probe.ready(wait_s):
            return False
        recorder.describe(waiting_for=None)
        if not probe.unavailable:
            recorder.log(f"step {step}: the quality classifier is ready")
    return True


def measure_quality(trainer: Trainer, recorder: Recorder, schedule: Schedule) -> None:
    """Quality metrics go into metrics.jsonl as their own row, so every viewer can plot them.

    Until the classifier trained in the background is ready nothing is measured; status.json's
    `waiting_for` says why.
    """
    probe = schedule.quality
    if probe is None or not take_in_classifier(recorder, schedule, trainer.step):
        return
    measured = probe.measure(trainer.sampling_generator, trainer.config.model.z_dim)
    if measured:  # nothing applies to a folder of a handful of images
        recorder.write_rows([{"step": trainer.step, "t": time.time(), **measured}])
    schedule.last_quality = trainer.step


def _wait_for_classifier(trainer: Trainer, recorder: Recorder, schedule: Schedule) -> Command | None:
    """A finished run's last quality point waits for its classifier; a stop command ends the wait."""
    probe = schedule.quality
    if probe is None or not probe.waiting_for:
        return None
    recorder.log(f"training is done; waiting for {probe.waiting_for} to measure the final samples")
    deadline = time.monotonic() + FINAL_QUALITY_WAIT_S
    while not take_in_classifier(recorder, schedule, trainer.step, wait_s=PAUSE_POLL_SECONDS):
        for command in recorder.commands():
            if command["cmd"] == "stop":
                return command
            recorder.refuse(command, "training is done; the run is waiting for its last quality measurement")
        if time.monotonic() > deadline:
            recorder.log(f"gave up waiting for {probe.waiting_for} after {FINAL_QUALITY_WAIT_S:.0f} s")
            return None
    return None


@contextlib.contextmanager
def _others_wait(trainer: Trainer, recorder: Recorder) -> Iterator[None]:
    """In a group, rank 0 draws, measures and saves alone; the log says how long the others waited."""
    started = time.perf_counter()
    yield
    waited = time.perf_counter() - started
    if trainer.group.distributed and trainer.group.is_main and waited >= OTHERS_WAIT_WORTH_SAYING:
        recorder.log(f"step {trainer.step}: the other ranks waited {waited:.1f} s for rank 0's samples and saves")


def _commands(trainer: Trainer, recorder: Recorder, paused: bool) -> list[Command]:
    """Commands to act on now: every step alone; in a group, at log steps, where the ranks meet anyway."""
    group = trainer.group
    if group.distributed and not paused and trainer.step % trainer.config.log.every:
        return []
    return group.share_commands(recorder.commands())


def _obey(command: Command, paused: bool, trainer: Trainer, recorder: Recorder, schedule: Schedule) -> bool:
    """Carry out a command other than stop; returns whether the loop is paused now."""
    name = command["cmd"]
    if name == "pause" and not paused:
        recorder.flush()
        recorder.set_state("paused", trainer.step, command)
        return True
    if name == "unpause" and paused:
        recorder.restart_clock()
        recorder.set_state("running", trainer.step, command)
        return False
    if name in ("pause", "unpause"):
        recorder.event("log", trainer.step, command, message=f"already {'paused' if paused else 'running'}")
    elif name == "checkpoint":
        with recorder.off_the_clock():
            write_checkpoint(trainer, recorder, schedule, command)
    elif name == "snapshot":
        with recorder.off_the_clock():
            write_sample(trainer, recorder, command)
    return paused


def fit(trainer: Trainer, recorder: Recorder, schedule: Schedule) -> str:
    """Train to `schedule.total_steps`; returns the final state: finished, stopped or failed."""
    config = trainer.config
    recorder.collect = trainer.collect_rows
    paused = False
    stop_command: Command | None = None
    recorder.set_state("running", trainer.step, total=schedule.total_steps)
    while trainer.step < schedule.total_steps and stop_command is None:
        # 1. commands from viewers and signals (all ranks of a group act on them at the same step)
        for command in _commands(trainer, recorder, paused):
            if command["cmd"] == "stop":
                stop_command = command
            else:
                paused = _obey(command, paused, trainer, recorder, schedule)
        # 1b. a classifier trained in the background, taken in as soon as its child ends, paused or not
        with recorder.off_the_clock():
            take_in_classifier(recorder, schedule, trainer.step)
        if paused or stop_command is not None:
            if paused and stop_command is None:
                time.sleep(PAUSE_POLL_SECONDS)
            continue
        # 2. one step
        trainer.train_step()
        step = trainer.step
        # 3. metrics, then the non-finite guard
        if step % config.log.every == 0 or step == schedule.total_steps:
            recorder.flush()
            if trainer.bad_streak >= config.train.max_bad_steps:
                return _fail_nonfinite(trainer, recorder, schedule)
        # 4. samples, checkpoints, quality
        with recorder.off_the_clock(), _others_wait(trainer, recorder):
            if config.sample.every and step % config.sample.every == 0 and write_sample(trainer, recorder):
                recorder.log(_progress_line(trainer, recorder, schedule))  # rank 0 alone: it drew the grid
            if config.checkpoint.every and step % config.checkpoint.every == 0:
                write_checkpoint(trainer, recorder, schedule)
            if config.quality.every and step % config.quality.every == 0:
                measure_quality(trainer, recorder, schedule)
    # 5. the end, finished or stopped: nothing trained is left unsaved
    recorder.flush()
    if trainer.bad_streak >= config.train.max_bad_steps:
        return _fail_nonfinite(trainer, recorder, schedule)
    if not recorder.run.sample_path(trainer.step).exists():
        write_sample(trainer, recorder)
    if schedule.last_checkpoint != trainer.step:
        write_checkpoint(trainer, recorder, schedule)
    # a finished run ends with a quality point, waiting for its classifier if need be; a stopped one does not wait
    if config.quality.every and schedule.last_quality != trainer.step:
        if stop_command is None:
            stop_command = _wait_for_classifier(trainer, recorder, schedule)
        measure_quality(trainer, recorder, schedule)
        recorder.describe(waiting_for=None)  # stopped, or given up: nothing is awaited any more
    state = "stopped" if stop_command is not None else "finished"
    recorder.set_state(state, trainer.step, stop_command)
    return state


def _fail_nonfinite(trainer: Trainer, recorder: Recorder, schedule: Schedule) -> str:
    """Stop without checkpointing: the newest checkpoint on disk stays the last good one."""
    kept = f"step {schedule.last_checkpoint}" if schedule.last_checkpoint >= 0 else "none yet"
    message = (
        f"stopped after {trainer.bad_streak} consecutive steps with non-finite losses "
        f"(train.max_bad_steps); last good checkpoint: {kept}"
    )
    recorder.event("alert", trainer.step, check="nonfinite", severity="error", message=message)
    recorder.set_state("failed", trainer.step, error=message)
    return "failed"


def _progress_line(trainer: Trainer, recorder: Recorder, schedule: Schedule) -> str:
    return (
        f"step {trainer.step}/{schedule.total_steps} epoch {trainer.batches.epochs_done:.2f} "
        f"{stats_line(recorder.last_row)}"
    )
