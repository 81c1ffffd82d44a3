"""Control commands answer at once with the truth: done, already so, or why not."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganterm.cli import app
from ganterm.errors import UserError
from ganterm.run.control import CommandInbox, send, send_and_wait
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.recorder import Recorder
from ganterm.run.status import read_status, this_host, write_status
from tests.conftest import wait_for


class FakeLoop:
    """A writer that obeys commands the way ganterm's loop does, at a steady 100 steps a second."""

    def __init__(self, run: RunDir) -> None:
        self.recorder = Recorder(run, log=lambda message: None, state="starting")
        self.recorder.set_state("running", 0)
        self.step, self.paused = 0, False
        self.reading = threading.Event()  # cleared: a long step, commands wait in the inbox
        self.reading.set()
        self.held = threading.Event()  # set while the loop waits for `reading`, between two steps
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        """A long step: the loop reads no command until `reading` is set again. Returns once it waits, so a
        command sent now cannot be read by a step already past its check."""
        self.held.clear()
        self.reading.clear()
        assert self.held.wait(timeout=10), "the loop did not come to wait"

    def loop(self) -> None:
        while True:
            if not self.reading.is_set():
                self.held.set()
                self.reading.wait()
            for command in self.recorder.commands():
                self.recorder.event("sample", self.step, path="samples/x.png")  # news of its own comes first
                if command["cmd"] == "stop":
                    self.recorder.set_state("stopped", self.step, command)
                    self.recorder.close()
                    return
                if command["cmd"] == "pause":
                    self.paused = True
                    self.recorder.set_state("paused", self.step, command)
                elif command["cmd"] == "unpause":
                    self.paused = False
                    self.recorder.set_state("running", self.step, command)
                elif command["cmd"] == "checkpoint":
                    self.recorder.refuse(command, "this run writes no checkpoints")
            self.step += not self.paused
            time.sleep(0.01)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[FakeLoop]:
    fake = FakeLoop(RunDir(tmp_path))
    yield fake
    fake.thread.join(timeout=5)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_stop_is_reported_as_done_when_the_run_stops(loop: FakeLoop):
    event, took = timed(lambda: send_and_wait(loop.recorder.run, "stop"))
    assert event["state"] == "stopped" and took < 2


def test_two_stops_at_once_both_succeed(loop: FakeLoop):
    """Both sent before the loop reads either (as from two shells during one step): both are answered done."""
    answers: list[dict] = []
    loop.hold()
    others = [threading.Thread(target=lambda: answers.append(send_and_wait(loop.recorder.run, "stop"))) for _ in "ab"]
    for thread in others:
        thread.start()
    wait_for(lambda: loop.recorder.run.control.exists() and len(read_jsonl(loop.recorder.run.control)) == 2,
             what="both stops in the inbox")  # fmt: skip
    loop.reading.set()
    for thread in others:
        thread.join(timeout=10)
    assert [answer["state"] for answer in answers] == ["stopped", "stopped"]


def test_pausing_a_paused_run_and_unpausing_a_running_one_answer_at_once(loop: FakeLoop):
    run = loop.recorder.run
    started = time.monotonic()
    with pytest.raises(UserError, match=r"already running; unpause did nothing$"):
        send_and_wait(run, "unpause")
    assert send_and_wait(run, "pause")["state"] == "paused"
    with pytest.raises(UserError, match=r"already paused; pause did nothing$"):
        send_and_wait(run, "pause")
    assert time.monotonic() - started < 10  # at once, not after a command's 30 s wait (the pause between included)
    send_and_wait(run, "stop")


def _live(run: RunDir, state: str) -> None:
    """A status as a worker leaves it; this test's process stands for a live one."""
    write_status(run, {"state": state, "step": 40, "pid": os.getpid(), "host": os.uname().nodename,
                       "heartbeat": time.time()})  # fmt: skip


@pytest.mark.parametrize(
    ("command", "state", "why"),
    [
        ("pause", "paused", "run 'r': already paused; pause did nothing"),
        ("unpause", "running", "run 'r': already running; unpause did nothing"),
        ("stop", "finished", "run 'r' is finished, so there is no worker to stop it"),
        ("checkpoint", "stopped", "run 'r' is stopped, so there is no worker to checkpoint it"),
        ("snapshot", "failed", "run 'r' is failed, so there is no worker to snapshot it"),
    ],
)
def test_a_control_command_that_does_nothing_exits_1_saying_why(tmp_path: Path, command: str, state: str, why: str):
    run = RunDir(tmp_path / "runs" / "r")
    run.path.mkdir(parents=True)
    _live(run, state)
    result = CliRunner().invoke(app, [command, "r", "--root", str(tmp_path / "runs")])
    assert (result.exit_code, result.output) == (1, f"error: {why}\n")
    assert not run.control.exists()  # nothing was sent


def test_a_worker_that_finds_the_run_already_so_answers_nothing_done(tmp_path: Path):
    """The viewer read running, but a pause from elsewhere got there first: the worker says already paused."""
    run = RunDir(tmp_path)
    _live(run, "running")
    inbox = CommandInbox(run, warn=lambda line: None)

    def answer() -> None:
        while not (commands := inbox()):
            time.sleep(0.01)
        append_jsonl(run.events, {"t": time.time(), "step": 40, "kind": "log", "ack": commands[0]["id"],
                                  "message": "already paused"})  # fmt: skip

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(UserError, match=r"^run .*: already paused; pause did nothing$"):
        send_and_wait(run, "pause")


def test_a_stalled_worker_is_told_the_command_and_the_caller_is_told_why_at_once(tmp_path: Path):
    run = RunDir(tmp_path)
    beat = time.time() - 60  # a process alive since long before (init) that stopped beating a minute ago
    write_status(run, {"state": "running", "pid": 1, "host": os.uname().nodename, "heartbeat": beat})
    started = time.monotonic()
    with pytest.raises(UserError, match=r"stalled; it will stop when it goes on.*kill -CONT"):
        send_and_wait(run, "stop")
    assert time.monotonic() - started < 5  # at once, not after the 30 s a live worker is given
    assert b'"cmd":"stop"' in run.control.read_bytes()  # it is there for the worker once it goes on


def test_a_torn_line_in_the_control_file_does_not_swallow_the_next_command(loop: FakeLoop):
    run = loop.recorder.run
    with open(run.control, "ab") as handle:
        handle.write(b"garbage without a newline")
    assert send_and_wait(run, "pause")["state"] == "paused"
    send_and_wait(run, "stop")


def test_a_run_folder_the_user_cannot_write_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Someone else's shared run: the control file cannot be opened for writing."""
    run = RunDir(tmp_path)
    write_status(run, {"state": "running", "pid": os.getpid(), "host": os.uname().nodename, "heartbeat": time.time()})
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if str(path) == str(run.control) and any(flag in mode for flag in "wax+"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(UserError, match=r"^cannot control run .*: its folder is not writable by you \(Permission d"):
        send(run, "pause")
    assert read_status(run)["state"] == "running"


def test_a_stop_that_the_runs_own_end_beats_did_nothing(tmp_path: Path):
    """The run finished its last step before it read the stop: the stop says so and exits 1."""
    run = RunDir(tmp_path)
    _live(run, "running")
    inbox = CommandInbox(run, warn=lambda line: None)

    def finish() -> None:
        while not inbox():
            time.sleep(0.01)
        write_status(run, {**read_status(run), "state": "finished"})

    threading.Thread(target=finish, daemon=True).start()
    with pytest.raises(UserError, match=r"^run .* ended \(finished\) before it could stop$"):
        send_and_wait(run, "stop")


def test_a_command_the_loop_cannot_carry_out_is_refused_with_its_reason(loop: FakeLoop):
    with pytest.raises(UserError, match=r"cannot checkpoint: this run writes no checkpoints$"):
        send_and_wait(loop.recorder.run, "checkpoint")
    refusal = read_jsonl(loop.recorder.run.events)[-1]
    assert (refusal["kind"], refusal["message"]) == ("log", "'checkpoint' refused: this run writes no checkpoints")
    send_and_wait(loop.recorder.run, "stop")


def _live_with(run: RunDir, **fields: object) -> None:
    """A status as this process's own live worker would write it."""
    write_status(run, {"state": "running", "pid": os.getpid(), "host": this_host(), "heartbeat": time.time(), **fields})


def test_a_run_with_no_worker_and_a_loop_that_does_not_take_the_command_are_told_at_once(tmp_path: Path):
    run = RunDir(tmp_path / "done")
    run.path.mkdir()
    write_status(run, {"state": "finished", "step": 9})
    with pytest.raises(UserError, match=r"^run 'done' is finished, so there is no worker to pause it$"):
        send_and_wait(run, "pause")
    _live_with(run, controls=["stop", "pause", "unpause"])  # a user's own loop: no checkpoints on request
    with pytest.raises(UserError, match=r"fed by its own training loop, which does not take 'checkpoint'$"):
        send_and_wait(run, "checkpoint")
    assert not run.control.exists()  # nothing was sent


def test_a_worker_that_never_answers_is_given_up_on_after_the_timeout(tmp_path: Path):
    run = RunDir(tmp_path)
    _live_with(run)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"did not answer 'pause' within 1 s$"):
        send_and_wait(run, "pause", timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 3


def test_the_inbox_takes_signals_first_old_names_as_new_and_says_what_it_skipped(tmp_path: Path):
    run = RunDir(tmp_path)
    run.control.write_bytes(b"")
    warnings: list[str] = []
    inbox = CommandInbox(run, warn=warnings.append)
    replica = CommandInbox(run, warn=warnings.append, read_file=False)
    run.control.write_bytes(b'{"cmd":"sample","id":"a"}\n{"cmd":"dance","id":"b"}\nnot json\n{"cmd":"stop","id":"c"}\n')
    inbox.on_signal(signal.SIGTERM, None)
    assert [(c["cmd"], c.get("id"), c.get("signal")) for c in inbox()] == [
        ("stop", None, "SIGTERM"), ("snapshot", "a", None), ("stop", "c", None),
    ]  # fmt: skip
    assert warnings == [
        "ignoring unknown control command {'cmd': 'dance', 'id': 'b'}",
        "skipped 1 unreadable line(s) in control.jsonl",
    ]
    assert inbox() == [] and replica() == []  # a replica of a distributed run hears signals only
    replica.on_signal(signal.SIGINT, None)
    assert replica() == [{"cmd": "stop", "signal": "SIGINT"}]


def test_a_stop_that_another_stop_beat_says_the_step_the_run_stopped_at(tmp_path: Path):
    """The worker answered the other stop and ended: `ganterm stop` still says where the run stopped."""
    run = RunDir(tmp_path)
    _live(run, "running")
    inbox = CommandInbox(run, warn=lambda line: None)

    def stop_for_the_other() -> None:
        while not inbox():
            time.sleep(0.01)
        write_status(run, {**read_status(run), "state": "stopped", "step": 41})

    threading.Thread(target=stop_for_the_other, daemon=True).start()
    assert send_and_wait(run, "stop") == {"kind": "status", "state": "stopped", "step": 41}


def test_commands_written_before_the_writer_started_are_not_obeyed(tmp_path: Path):
    """They were for an earlier worker of the run: a resumed run does not stop at once on the stop that ended it."""
    run = RunDir(tmp_path)
    run.control.write_bytes(b'{"cmd":"stop","id":"old"}\nnot json\n')
    warnings: list[str] = []
    inbox = CommandInbox(run, warn=warnings.append)
    assert inbox() == [] and warnings == []
    with run.control.open("ab") as control:
        control.write(b'{"cmd":"pause","id":"new"}\nnot json\nnor this\n')
    assert [c["id"] for c in inbox()] == ["new"] and warnings == ["skipped 2 unreadable line(s) in control.jsonl"]
    with run.control.open("ab") as control:
        control.write(b'{"cmd":"unpause","id":"newer"}\nstill not json\n')
    assert [c["id"] for c in inbox()] == ["newer"] and inbox() == []
    assert warnings[1:] == ["skipped 1 unreadable line(s) in control.jsonl"]  # counted afresh each time, said once
