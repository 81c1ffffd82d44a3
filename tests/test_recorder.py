"""The one writer of a run directory keeps its rules for every loop that uses it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.lock import RunLocked
from ganterm.run.recorder import Recorder
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
    assert [_kept_small(fields["message"].removeprefix("failed: ")) for fields in told] == [True, True]


def test_a_huge_failure_said_by_the_supervisor_is_kept_to_a_few_kb(tmp_path: Path):
    from ganterm.training.supervisor import record_failure

    run = RunDir(tmp_path)
    record_failure(run, HUGE)
    assert _kept_small(read_status(run)["error"]) and _kept_small(read_jsonl(run.events)[-1]["error"])
    assert run.status.stat().st_size < 3 * TEXT_LIMIT
