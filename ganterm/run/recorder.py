"""The writing side of a run directory, for every training loop: ganterm's worker and `ganterm.Run` alike.

One `Recorder` per run owns what a viewer reads: the lock, status.json and its
heartbeat, metrics.jsonl, events.jsonl (alerts, samples, checkpoints, state
changes) and the commands that arrive in control.jsonl. Loops hand it rows and
pictures; it keeps the rules no loop should have to remember:

- rows reach the disk before a checkpoint does, so a checkpoint is never ahead
  of the record (kill -9 right after it loses no step of history);
- a command is acknowledged in events.jsonl before the status changes, so a
  CLI waiting on its `ack` never sees the state move without the answer;
- a command the loop cannot carry out is refused at once, with the reason;
- time spent paused or writing checkpoints does not count against img/s.

torch-free, like the rest of `ganterm.run`: rows arrive as plain numbers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ganterm.logline import state_line
from ganterm.run.control import Command, CommandInbox
from ganterm.run.jsonl import JsonlWriter, record_event
from ganterm.run.layout import RunDir
from ganterm.run.lock import acquire_lock
from ganterm.run.status import StatusBoard
from ganterm.run.values import BadValue, plain_row

Row = dict[str, Any]


class AlertLike(Protocol):
    check: str
    step: int
    message: str

    def event(self) -> dict[str, Any]: ...


class HealthChecks(Protocol):
    """What `ganterm.health.HealthMonitor` offers: new alerts for new rows."""

    def update(self, rows: list[Row]) -> list[AlertLike]: ...


class Notices(Protocol):
    """What `ganterm.notify.Notifier` offers: tell someone about an alert or the run's end, without waiting."""

    def notice(self, event: str, step: int, **fields: Any) -> None: ...

    def close(self) -> None: ...


NOTIFIED_STATES = ("finished", "stopped", "failed")


def _no_rows() -> list[Row]:
    return []


class Recorder:
    """A run directory's one writer; see the module docstring for the rules it keeps.

    `collect` returns the rows not yet written (the loop keeps statistics on
    its device until then). The status fact `images_per_step` (given here or to
    `describe`) turns rows per second into img/s, and lets viewers plot against images seen.
    """

    def __init__(
        self,
        run: RunDir,
        *,
        log: Callable[[str], None] = print,
        health: HealthChecks | None = None,
        **status: Any,
    ) -> None:
        self.run = run
        self.log = log
        self.health = health
        self.notices: Notices | None = None  # set when the run's config names a notify.url
        self.images_per_step = int(status.get("images_per_step") or 0)
        self.collect: Callable[[], list[Row]] = _no_rows
        self.last_row: Row = {}
        self.step = 0
        self._lock = acquire_lock(run)
        self.inbox = CommandInbox(run, warn=lambda message: log(f"warning: {message}"))
        self.status = StatusBoard(run, **status)
        self.status.update()
        self.status.start()
        self._metrics = JsonlWriter(run.metrics)
        self._warned: set[str] = set()  # what a warning about a left-out value was already given for
        self._unwritten: list[Row] = []  # rows a failed write (a full disk) left: written first next time
        self._interval_start = time.perf_counter()

    # ----- rows -----

    def flush(self) -> list[Row]:
        """Write the rows `collect` holds, check their health, and move the status's step on.

        Rows whose write failed are kept and go first next time, so a checkpoint
        saved after a failure (the worker tries one) is still never ahead of the rows.
        """
        rows = self._plain(self.collect())
        if self.images_per_step and rows:
            elapsed = time.perf_counter() - self._interval_start
            # steps since the last flush, not rows: a user's loop may log every tenth step
            steps = int(rows[-1]["step"]) - self.step
            rate = round((steps if steps > 0 else len(rows)) * self.images_per_step / max(elapsed, 1e-9), 1)
            for row in rows:
                row["img_per_s"] = rate
        rows = self._unwritten + rows
        if not rows:
            return rows
        self._unwritten = rows
        self._metrics.write(rows)
        self._unwritten = []
        self._written(rows)
        self.last_row = rows[-1]
        self._interval_start = time.perf_counter()
        return rows

    def write_rows(self, rows: list[Row]) -> None:
        """Rows as they are (a quality measurement, say): written, health-checked, step noted."""
        rows = self._plain(rows)
        if not rows:
            return
        self._metrics.write(rows)
        self._written(rows)

    def _plain(self, rows: list[Row]) -> list[Row]:
        """Rows of plain numbers (`values.plain_row`): a bad value is left out alone, said once per name."""
        plain = []
        for row in rows:
            try:
                kept, problems = plain_row(row)
            except BadValue as error:
                self._warn_once("row", f"left out a row: {error}")
                continue
            for name, problem in problems.items():
                self._warn_once(f"value {name}", f"left out a value at step {kept['step']}: {problem}")
            plain.append(kept)
        return plain

    def _warn_once(self, about: str, message: str) -> None:
        if about not in self._warned:
            self._warned.add(about)
            self.log(f"warning: {message}")

    def _written(self, rows: list[Row]) -> None:
        self.step = max(self.step, *(int(row["step"]) for row in rows))
        self.status.update(step=self.step)
        self._check_health(rows)

    def _check_health(self, rows: list[Row]) -> None:
        if self.health is None:
            return
        for alert in self.health.update(rows):
            self.event("alert", alert.step, **alert.event())
            self.log(f"alert at step {alert.step}: {alert.message}")

    # ----- events -----

    def event(self, kind: str, step: int, command: Command | None = None, **fields: Any) -> None:
        """One record in events.jsonl; naming `command` acknowledges it. An alert is also pushed to `notices`.

        Texts are clipped where they leave (`record_event`, `write_status`, `notify.payload`), once each.
        """
        record_event(self.run, kind, step, **_ack(command), **fields)
        if kind == "alert" and self.notices is not None:
            told = {key: fields[key] for key in ("check", "severity", "message") if key in fields}
            self.notices.notice("alert", step, **told)

    def checkpoint(self, step: int, save: Callable[[], Path | None], command: Command | None = None) -> Path | None:
        """Rows first, then the checkpoint `save` writes (and returns, when it says where), then its event."""
        self.flush()
        path = save()
        self.event("checkpoint", step, command, **({"path": self._relative(path)} if path else {}))
        return path

    def sample(self, step: int, save: Callable[[], Path], command: Command | None = None) -> Path:
        path = save()
        self.event("sample", step, command, path=self._relative(path))
        return path

    def refuse(self, command: Command, reason: str) -> None:
        """Answer a command the loop cannot carry out, at once and with the reason."""
        self.event("log", self.step, command, refused=reason, message=f"{command.get('cmd')!r} refused: {reason}")

    def set_state(self, state: str, step: int, command: Command | None = None, **fields: Any) -> None:
        """Acknowledge first, then tell status.json: a waiting CLI finds its answer whatever it reads first."""
        self.step = step
        self.event("status", step, command, state=state, **fields)
        self.status.update(state=state, step=step, **fields)
        self.log(state_line(step, state))
        if state in NOTIFIED_STATES and self.notices is not None:
            self.notices.notice(state, step, **({"message": f"failed: {fields['error']}"} if "error" in fields else {}))

    def _relative(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(path).absolute().relative_to(self.run.path.absolute()))
        return str(path)

    # ----- commands and time -----

    def commands(self) -> list[Command]:
        return self.inbox()

    @contextlib.contextmanager
    def off_the_clock(self) -> Iterator[None]:
        """Time spent in here (writing samples or checkpoints, paused) does not count against img/s."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._interval_start += time.perf_counter() - started

    def describe(self, **fields: Any) -> None:
        """Facts about the run for status.json: its total, device, world size, images per step, ..."""
        self.images_per_step = int(fields.get("images_per_step", self.images_per_step) or 0)
        self.status.update(**fields)

    def restart_clock(self) -> None:
        """Going on after a pause: img/s counts from now."""
        self._interval_start = time.perf_counter()

    def close(self) -> None:
        """Stop the heartbeat and release the run; the last state written stays. Waiting notices go out first:
        up to 10 s against a receiver that is down, which a `--resume` waits out (`waiting.ensure_idle`)."""
        try:
            if self.notices is not None:
                self.notices.close()
                self.notices = None
        finally:  # an interrupted wait (Ctrl-C in a notebook) must not leave the run held
            self.status.close()
            self._metrics.close()
            if self._lock >= 0:
                os.close(self._lock)
                self._lock = -1


def _ack(command: Command | None) -> dict[str, Any]:
    return {"ack": command["id"]} if command and "id" in command else {}


class ReplicaRecorder:
    """What the other ranks of a distributed run hold instead of a `Recorder`: the same calls, nothing written.

    Rank 0 owns the run directory. The others go through the same motions, so
    that `collect` (which averages statistics across ranks, a collective) runs
    at the same points on every rank, and a stop from a signal reaches rank 0
    through `commands`.
    """

    def __init__(self, run: RunDir, *, log: Callable[[str], None] = print, **_status: Any) -> None:
        self.run = run
        self.log = log
        self.health: HealthChecks | None = None
        self.collect: Callable[[], list[Row]] = _no_rows
        self.last_row: Row = {}
        self.step = 0
        self.inbox = CommandInbox(run, warn=log, read_file=False)

    def flush(self) -> list[Row]:
        rows = self.collect()
        if rows:
            self.last_row = rows[-1]
        return rows

    def write_rows(self, rows: list[Row]) -> None:
        pass

    def event(self, kind: str, step: int, command: Command | None = None, **fields: Any) -> None:
        pass

    def checkpoint(self, step: int, save: Callable[[], Path | None], command: Command | None = None) -> None:
        self.flush()

    def sample(self, step: int, save: Callable[[], Path], command: Command | None = None) -> None:
        pass

    def refuse(self, command: Command, reason: str) -> None:
        pass

    def set_state(self, state: str, step: int, command: Command | None = None, **fields: Any) -> None:
        self.step = step
        self.log(state_line(step, state))

    def describe(self, **fields: Any) -> None:
        pass

    def commands(self) -> list[Command]:
        return self.inbox()

    off_the_clock = staticmethod(contextlib.nullcontext)

    def restart_clock(self) -> None:
        pass

    def close(self) -> None:
        pass
