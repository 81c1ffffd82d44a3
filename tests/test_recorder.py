"""The one writer of a run directory keeps its rules for every loop that uses it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganterm.health import Alert
from ganterm.notify import payload
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.lock import RunLocked
from ganterm.run.recorder import Recorder, ReplicaRecorder
from ganterm.run.schema import stats_line, tag
from ganterm.run.status import StatusBoard, read_status
from ganterm.run.text import TEXT_LIMIT


@pytest.fixture
def recorder(tmp_path: Path):
    recorder = Recorder(RunDir(tmp_path), log=lambda message: None, state="starting")
    yield recorder
    recorder.close()


def test_a_checkpoint_is_never_ahead_of_the_rows_on_disk(recorder: Recorder):
    """Rows still held by the loop reach metrics.jsonl before the checkpoint file is written."""
    pending = [{"step": step, "t": 0.0, "loss_d": 1.0} for step in (6, 7)]
    recorder.collect = lambda: [pending.pop(0) for _ in range(len(pending))]
    steps_on_disk_at_save: list[int] = []

    def save() -> Path:
        steps_on_disk_at_save.extend(row["step"] for row in read_jsonl(recorder.run.metrics))
        path = recorder.run.path / "checkpoint.bin"
        path.write_bytes(b"weights")
        return path

    recorder.checkpoint(7, save)
    assert steps_on_disk_at_save == [6, 7]
    assert read_jsonl(recorder.run.events)[-1] == {**read_jsonl(recorder.run.events)[-1], "path": "checkpoint.bin"}


def test_the_acknowledgement_is_on_disk_before_the_state_changes(recorder: Recorder, monkeypatch: pytest.MonkeyPatch):
    """A CLI that sees the new state finds its answer already there."""
    acks_when_status_written: list[list[str]] = []
    real_update = StatusBoard.update

    def spying_update(board: StatusBoard, **fields: object) -> None:
        acks_when_status_written.append([e.get("ack") for e in read_jsonl(recorder.run.events) if "ack" in e])
        real_update(board, **fields)

    monkeypatch.setattr(StatusBoard, "update", spying_update)
    recorder.set_state("stopped", 12, {"cmd": "stop", "id": "abc"})
    assert acks_when_status_written == [["abc"]]
    assert read_status(recorder.run)["state"] == "stopped"


def test_commands_arrive_by_their_current_names(recorder: Recorder):
    """A control file from before the rename still unpauses."""
    append_jsonl(recorder.run.control, {"cmd": "resume", "id": "old"})
    append_jsonl(recorder.run.control, {"cmd": "checkpoint", "id": "new"})
    assert [(c["cmd"], c["id"]) for c in recorder.commands()] == [("unpause", "old"), ("checkpoint", "new")]


def test_a_run_has_one_writer(recorder: Recorder):
    with pytest.raises(RunLocked):
        Recorder(recorder.run, log=lambda message: None)


def test_img_per_s_leaves_out_time_off_the_clock(recorder: Recorder, monkeypatch: pytest.MonkeyPatch):
    """Writing a checkpoint does not count against throughput."""
    clock = iter([0.0, 1.0, 11.0, 12.0, 12.0])  # interval start, off-clock start and end, flush (twice)
    monkeypatch.setattr("ganterm.run.recorder.time.perf_counter", lambda: next(clock))
    recorder.restart_clock()
    recorder.describe(images_per_step=64)
    with recorder.off_the_clock():
        pass
    recorder.collect = lambda: [{"step": 1, "t": 0.0}]
    assert recorder.flush()[0]["img_per_s"] == 32.0  # 64 images in the 2 s on the clock, not in 12 s


def test_ctrl_c_while_the_last_notices_go_out_still_lets_go_of_the_run(tmp_path: Path):
    """In a notebook the wait for a receiver that is down is interrupted; the run must not stay held."""

    class InterruptedNotices:
        def close(self) -> None:
            raise KeyboardInterrupt

    recorder = Recorder(RunDir(tmp_path), log=lambda message: None, state="starting")
    recorder.notices = InterruptedNotices()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        recorder.close()
    Recorder(RunDir(tmp_path), log=lambda message: None).close()  # RunLocked if the first still held it


def test_a_bad_value_from_any_loop_is_left_out_alone_and_said_once(tmp_path: Path):
    """ganterm's own worker writes through here too: a value the file cannot hold costs no other value or row."""
    said: list[str] = []
    recorder = Recorder(RunDir(tmp_path), log=said.append, state="running")
    rows = [
        {"step": 1, "t": 1.0, "loss_d": 0.5, "note": "x"},
        {"step": 2, "t": 2.0, "loss_d": 0.5, "note": "y", "big": 10**30},
        {"step": "three", "t": 3.0, "loss_d": 0.5},
        {"step": 4, "t": 4.0, "loss_d": 0.5, "run": 1.0},
    ]
    recorder.collect = lambda: rows
    try:
        recorder.flush()
        recorder.write_rows([{"step": 4, "t": 4.5, "precision": [0.5]}])
    finally:
        recorder.close()
    written = read_jsonl(RunDir(tmp_path).metrics)
    assert [(row["step"], row.get("loss_d"), row.get("big")) for row in written] == [
        (1, 0.5, None), (2, 0.5, 1e30), (4, 0.5, None), (4, None, None)
    ]  # fmt: skip
    assert not any("note" in row or "run" in row or "precision" in row for row in written)
    assert read_status(RunDir(tmp_path))["step"] == 4
    warnings = [line for line in said if line.startswith("warning")]
    assert len(warnings) == 4 and "'note'" in warnings[0] and "step must be" in warnings[1]


HUGE = "begins " + "x" * 5_000_000 + " ends"


def _kept_small(text: str) -> bool:
    ends_kept = text.startswith("begins ") and text.endswith(" ends")
    return len(text) <= TEXT_LIMIT and ends_kept and "characters cut" in text


def test_a_huge_text_is_kept_to_a_few_kb_in_status_events_and_notices(tmp_path: Path):
    """Beginning and end kept, the middle cut and said: status.json, each events line, each notice."""
    told: list[dict] = []
    recorder = Recorder(RunDir(tmp_path), log=lambda message: None, state="running")
    recorder.notices = SimpleNamespace(notice=lambda event, step, **fields: told.append(fields), close=lambda: None)
    try:
        recorder.event("alert", 3, check="mine", severity="warning", message=HUGE, evidence={"why": HUGE})
        recorder.set_state("failed", 3, error=HUGE)
    finally:
        recorder.close()
    assert RunDir(tmp_path).status.stat().st_size < 3 * TEXT_LIMIT
    assert _kept_small(read_status(RunDir(tmp_path))["error"])
    assert all(len(line) < 3 * TEXT_LIMIT for line in RunDir(tmp_path).events.read_bytes().splitlines())
    alert, failed = read_jsonl(RunDir(tmp_path).events)[-2:]
    assert _kept_small(alert["message"]) and _kept_small(alert["evidence"]["why"]) and _kept_small(failed["error"])
    sent = [payload("r", "alert", 3, "host", **fields)["message"] for fields in told]  # the notifier clips
    assert [_kept_small(message.removeprefix("failed: ")) for message in sent] == [True, True]


def test_a_huge_failure_said_by_the_supervisor_is_kept_to_a_few_kb(tmp_path: Path):
    from ganterm.training.supervisor import record_failure

    run = RunDir(tmp_path)
    record_failure(run, HUGE)
    assert _kept_small(read_status(run)["error"]) and _kept_small(read_jsonl(run.events)[-1]["error"])
    assert run.status.stat().st_size < 3 * TEXT_LIMIT


class KeptNotices:
    """Notices as the Recorder hands them over, and whether it closed them."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int, dict]] = []
        self.closed = False

    def notice(self, event: str, step: int, **fields: object) -> None:
        self.told.append((event, step, fields))

    def close(self) -> None:
        self.closed = True


def test_alerts_and_the_end_are_handed_to_the_notices_with_the_fields_a_receiver_reads(recorder: Recorder):
    notices, logged = KeptNotices(), []
    recorder.notices, recorder.log = notices, logged.append
    recorder.event("alert", 12, check="nan", severity="error", message="NaN at 12", evidence={"loss_d": 1.0})
    recorder.event("log", 12, message="not for the notices")
    recorder.set_state("running", 13)
    recorder.set_state("failed", 14, error="CUDA out of memory")
    assert logged == ["step 13: running", "step 14: failed"]
    status, event = read_status(recorder.run), read_jsonl(recorder.run.events)[-1]
    assert (status["state"], status["step"], status["error"]) == ("failed", 14, "CUDA out of memory")
    assert {key: event[key] for key in ("kind", "state", "step", "error")} == {
        "kind": "status", "state": "failed", "step": 14, "error": "CUDA out of memory",
    }  # fmt: skip
    assert notices.told == [
        ("alert", 12, {"check": "nan", "severity": "error", "message": "NaN at 12"}),
        ("failed", 14, {"message": "failed: CUDA out of memory"}),
    ]
    recorder.close()
    assert notices.closed and recorder.notices is None


def test_rows_written_as_they_are_move_the_step_on_and_file_paths_are_told_relative_to_the_run(recorder: Recorder):
    recorder.write_rows([{"step": 30, "t": 1.0, "fd_classifier": 12.5}])
    assert read_jsonl(recorder.run.metrics) == [{"step": 30, "t": 1.0, "fd_classifier": 12.5}]
    assert read_status(recorder.run)["step"] == 30 and recorder.step == 30
    snapshot, checkpoint = {"cmd": "snapshot", "id": "s1"}, {"cmd": "checkpoint", "id": "c1"}
    inside = recorder.sample(30, lambda: recorder.run.path / "samples" / "step_0000030.png", snapshot)
    outside = recorder.checkpoint(31, lambda: Path("/elsewhere/g.safetensors"), checkpoint)
    recorder.checkpoint(32, lambda: None)  # a save that does not say where
    assert str(inside) == str(recorder.run.path / "samples" / "step_0000030.png") and outside is not None
    assert [{k: v for k, v in e.items() if k != "t"} for e in read_jsonl(recorder.run.events)[-3:]] == [
        {"step": 30, "kind": "sample", "ack": "s1", "path": "samples/step_0000030.png"},
        {"step": 31, "kind": "checkpoint", "ack": "c1", "path": "/elsewhere/g.safetensors"},
        {"step": 32, "kind": "checkpoint"},
    ]


def test_a_replica_of_a_distributed_run_writes_nothing_but_keeps_the_last_row(tmp_path: Path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    logged: list[str] = []
    replica = ReplicaRecorder(run, log=logged.append)
    replica.collect = lambda: [{"step": 1, "t": 0.0, "loss_d": 0.5}]
    assert replica.flush() == [{"step": 1, "t": 0.0, "loss_d": 0.5}] and replica.last_row["loss_d"] == 0.5
    replica.checkpoint(1, lambda: tmp_path / "never")
    replica.set_state("stopped", 1)
    append_jsonl(run.control, {"cmd": "pause", "id": "p"})  # for rank 0, which reads the file
    replica.inbox.on_signal(signal.SIGTERM, None)
    assert replica.commands() == [{"cmd": "stop", "signal": "SIGTERM"}]
    run.control.unlink()
    replica.close()
    assert list(run.path.iterdir()) == [] and replica.step == 1 and logged == ["step 1: stopped"]


def test_a_fresh_recorder_is_at_step_0_with_nothing_to_say_yet(recorder: Recorder):
    """A run stopped before its first row: the worker's last log line and a refusal read so."""
    assert stats_line(recorder.last_row) == "" and recorder.flush() == []
    recorder.refuse({"cmd": "checkpoint", "id": "c"}, "not yet")
    assert read_jsonl(recorder.run.events)[-1]["step"] == 0


def test_img_per_s_is_rounded_to_a_tenth_and_counts_under_a_second_as_it_is(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
):
    clock = iter([0.0, 3.0, 3.0, 3.5, 3.5])  # interval start, flush at 3 s (twice), flush half a second later
    monkeypatch.setattr("ganterm.run.recorder.time.perf_counter", lambda: next(clock))
    recorder.restart_clock()
    recorder.describe(images_per_step=64)
    recorder.collect = lambda: [{"step": 1, "t": 0.0}]
    assert recorder.flush()[0]["img_per_s"] == 21.3  # 64 images in 3 s
    recorder.collect = lambda: [{"step": 2, "t": 0.0}]
    assert recorder.flush()[0]["img_per_s"] == 128.0  # in 0.5 s


def test_rows_a_full_disk_did_not_take_go_first_on_the_next_flush(recorder: Recorder, monkeypatch: pytest.MonkeyPatch):
    real_write = recorder._metrics.write
    failures = iter([OSError(28, "No space left on device")])

    def full_once(rows: list) -> None:
        failure = next(failures, None)
        if failure:
            raise failure
        real_write(rows)

    monkeypatch.setattr(recorder._metrics, "write", full_once)
    recorder.collect = lambda: [{"step": 1, "t": 0.0}]
    with pytest.raises(OSError):
        recorder.flush()
    recorder.collect = lambda: [{"step": 2, "t": 0.0}]
    assert [row["step"] for row in recorder.flush()] == [1, 2]
    assert [row["step"] for row in read_jsonl(recorder.run.metrics)] == [1, 2]


def test_the_worker_logs_line_gives_losses_three_digits_and_ds_outputs_two():
    row = {"loss_d": 0.69314, "loss_g": 0.70215, "d_x": 0.5012, "d_g_z1": 0.4913, "img_per_s": 612.4}
    assert stats_line(row) == "loss_d 0.693  loss_g 0.702  D(x) 0.50  D(G(z)) 0.49  612 img/s"


def test_a_users_metric_named_like_a_tidy_tag_goes_under_own_in_tensorboard():
    """A loop logging `loss/d` beside `loss_d`: TensorBoard would draw the two as one series."""
    assert tag("loss_d") == "loss/d" and tag("loss/d") == "own/loss/d" and tag("sharpness") == "sharpness"


def test_an_unknown_control_command_is_said_in_the_runs_log_as_a_warning(tmp_path: Path):
    """A typo in a hand-written control.jsonl line reaches worker.log, where whoever wrote it looks."""
    said: list[str] = []
    recorder = Recorder(RunDir(tmp_path), log=said.append, state="running")
    try:
        append_jsonl(recorder.run.control, {"cmd": "stpo", "id": "x"})
        assert recorder.commands() == []
    finally:
        recorder.close()
    assert said == ["warning: ignoring unknown control command {'cmd': 'stpo', 'id': 'x'}"]


class AlertsAtStep:
    """Health checks that find a problem in the row of one step, as `HealthMonitor` would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def update(self, rows: list[dict]) -> list[Alert]:
        return [
            Alert("d_wins", "warning", row["step"], "D wins", {"d_x": 0.99}) for row in rows if row["step"] == self.step
        ]


def test_an_alert_is_recorded_at_the_step_it_is_about_and_said_in_the_runs_log(tmp_path: Path):
    """The dashboard marks an alert where it happened, not at the flush that found it; worker.log says it too."""
    said: list[str] = []
    recorder = Recorder(RunDir(tmp_path), log=said.append, health=AlertsAtStep(6), state="running")
    recorder.collect = lambda: [{"step": step, "t": 0.0, "d_x": 0.99} for step in (5, 6, 7)]
    try:
        recorder.flush()
    finally:
        recorder.close()
    alerts = [event for event in read_jsonl(RunDir(tmp_path).events) if event["kind"] == "alert"]
    assert [(alert["step"], alert["check"], alert["message"]) for alert in alerts] == [(6, "d_wins", "D wins")]
    assert said == ["alert at step 6: D wins"]


@pytest.mark.parametrize("state", ["finished", "stopped"])
def test_a_run_that_ends_well_is_told_to_the_notices_without_a_failure(recorder: Recorder, state: str):
    """A run with a notify.url that finishes or stops sends its notice, saying no error it did not have."""
    notices = KeptNotices()
    recorder.notices = notices
    recorder.set_state(state, 20)
    assert notices.told == [(state, 20, {})]
    assert read_status(recorder.run)["state"] == state


def test_describing_the_run_later_keeps_the_images_per_step_given_at_the_start(tmp_path: Path):
    """A loop that says its batch when it starts, then its device: img/s goes on being written."""
    recorder = Recorder(RunDir(tmp_path), log=lambda message: None, images_per_step=64)
    try:
        recorder.describe(device="cpu", total=100)
        recorder.collect = lambda: [{"step": 1, "t": 0.0}]
        assert recorder.flush()[0]["img_per_s"] > 0
        assert read_status(recorder.run)["images_per_step"] == 64
    finally:
        recorder.close()


def test_a_run_never_told_its_images_per_step_writes_no_img_per_s(recorder: Recorder):
    """No batch size given, none made up: the dashboard has no throughput to show rather than a wrong one."""
    recorder.describe(device="cpu", total=100)
    recorder.collect = lambda: [{"step": 1, "t": 0.0}]
    assert "img_per_s" not in recorder.flush()[0]
    assert "images_per_step" not in read_status(recorder.run)


def test_closing_a_run_twice_leaves_the_processs_other_files_alone(tmp_path: Path):
    """`finish()` and the with block's end both close: the second must not close a descriptor the run gave back."""
    recorder = Recorder(RunDir(tmp_path), log=lambda message: None)
    stdout = os.dup(1)  # put back below, whatever happens: pytest captures through descriptor 1
    try:
        recorder.close()
        recorder.close()
        os.fstat(1)  # OSError (EBADF) if stdout was closed
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)


def test_a_replica_starts_where_a_recorder_does_and_looks_where_rank_0_writes(tmp_path: Path):
    """The loop runs the same code on every rank: before its first row a replica is at step 0 with nothing to say,
    and at the end it asks rank 0's folder whether the last sample is there."""
    run = RunDir(tmp_path)
    replica = ReplicaRecorder(run, log=lambda message: None)
    assert (replica.step, stats_line(replica.last_row), replica.flush()) == (0, "", [])
    assert replica.run.sample_path(40) == run.sample_path(40)
    assert list(run.path.iterdir()) == []
