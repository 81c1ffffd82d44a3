"""The run-directory contract: whole lines, torn tails, atomic status, lost and stalled workers, run lookup."""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ganterm.errors import UserError
from ganterm.run.files import write_atomic
from ganterm.run.jsonl import JsonlTail, JsonlWriter, TextTail, latest_values
from ganterm.run.layout import RunDir, check_run_name, claim_new_run, list_runs, new_run_name, resolve_run
from ganterm.run.lock import RunLocked, acquire_lock, lock_holder
from ganterm.run.rewind import rewind
from ganterm.run.status import (
    StatusBoard,
    effective_state,
    read_status,
    stalled_reason,
    this_host,
    write_status,
)
from ganterm.run.text import clip
from tests.conftest import wait_for


def test_a_file_removed_between_a_tails_look_and_its_read_reads_as_nothing_yet(tmp_path: Path, monkeypatch):
    """A run deleted while a viewer follows it: the file can vanish after the tail saw its size grow."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "t": 1.0}\n')
    tail = JsonlTail(path)

    def removed_meanwhile(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr("ganterm.run.jsonl.open", removed_meanwhile, raising=False)
    assert tail.read() == [] and tail.pending_bytes > 0
    monkeypatch.undo()
    assert [record["step"] for record in tail.read()] == [1]


def test_nan_and_infinity_are_written_as_null(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as writer:
        writer.write([{"step": 1, "loss_d": float("nan"), "loss_g": float("inf"), "d_x": 0.5}])
    assert path.read_text() == '{"step":1,"loss_d":null,"loss_g":null,"d_x":0.5}\n'


def test_torn_last_line_waits_for_its_end(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1,"loss_d":0.5}\n{"step":2,"lo')
    tail = JsonlTail(path)
    assert tail.read() == [{"step": 1, "loss_d": 0.5}]
    assert tail.read() == []
    with open(path, "ab") as handle:
        handle.write(b'ss_d":0.25}\n')
    assert tail.read() == [{"step": 2, "loss_d": 0.25}]
    assert tail.bad_lines == 0


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind":"sample"}\nthis is not json\n[1,2]\n\n{"kind":"alert"}\n')
    tail = JsonlTail(path)
    assert [r["kind"] for r in tail.read()] == ["sample", "alert"]
    assert tail.bad_lines == 2


def test_tail_notices_a_rewound_file_and_starts_over(tmp_path: Path):
    run = RunDir(tmp_path)
    run.metrics.write_bytes(b"".join(b'{"step":%d}\n' % s for s in range(1, 6)))
    tail = JsonlTail(run.metrics)
    assert len(tail.read()) == 5
    rewind(run, 2)
    assert tail.read() == [{"step": 1}, {"step": 2}]
    assert tail.reset


def test_rewind_cuts_the_metrics_at_the_first_later_row_and_a_torn_last_line_with_them(tmp_path: Path):
    """A crash mid-write leaves a torn line; the resumed writer's rows must not be glued onto it."""
    run = RunDir(tmp_path)
    rows = b"".join(b'{"step":%d,"t":1.0}\n' % s for s in range(1, 5))
    run.metrics.write_bytes(rows + b'not json\n[4]\n{"step":3')
    rewind(run, 4)
    assert run.metrics.read_bytes() == rows + b"not json\n[4]\n"  # whole lines stay, even unreadable ones
    rewind(run, 2)
    assert run.metrics.read_bytes() == rows[: rows.index(b'{"step":3')]
    rewind(RunDir(tmp_path / "empty"), 2)  # nothing logged yet: nothing to cut


def test_rewind_drops_later_samples(tmp_path: Path):
    run = RunDir(tmp_path)
    run.samples.mkdir()
    for step in (100, 200, 300):
        run.sample_path(step).write_bytes(b"png")
    rewind(run, 200)
    assert [p.name for p in run.sample_files()] == ["step_0000100.png", "step_0000200.png"]


def test_latest_values_reads_from_the_end_past_a_torn_line(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(b'{"step":%d,"pad":"%s"}\n' % (s, b"x" * 100) for s in range(5000)) + b'{"step":50')
    assert latest_values(path, ("step",))["step"] == 4999


def _rows_of_100_bytes(count: int, marked: dict[int, str]) -> bytes:
    """`count` metrics lines of exactly 100 bytes each; line i of `marked` also holds that key, valued i."""
    lines = []
    for index in range(count):
        line = b'{"step":%d' % index + (b',"%s":%d' % (marked[index].encode(), index) if index in marked else b"")
        lines.append(line + b',"pad":"' + b"x" * (100 - len(line) - 11) + b'"}\n')
    assert {len(line) for line in lines} == {100}
    return b"".join(lines)


def test_a_value_on_a_line_cut_by_a_chunk_boundary_is_read_whole(tmp_path: Path):
    """latest_values reads 64 KiB at a time from the end: a line across two chunks is joined, not lost."""
    straddling = 1000 - 65536 // 100 - 1  # 65,536 bytes from the end falls inside this line
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(_rows_of_100_bytes(1000, {straddling: "rare"}))
    found = latest_values(path, ("rare",))
    assert (found["rare"], found["step"]) == (straddling, 999)


def test_latest_values_stops_one_mebibyte_back_and_reads_no_further(tmp_path: Path):
    """Values older than TAIL_LIMIT_BYTES from the end are not looked for: a long run's file is not read whole."""
    lines = 12_000  # 1.2 MB
    within, beyond = lines - (1 << 20) // 100 + 1, lines - (1 << 20) // 100 - 300  # 1 MiB back, and one chunk more
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(_rows_of_100_bytes(lines, {within: "near", beyond: "far"}))
    found = latest_values(path, ("near", "far"))
    assert found["near"] == within and "far" not in found


def test_the_newest_values_of_a_short_file_are_found_past_a_quality_row_and_a_stray_line(tmp_path: Path):
    """A run one row old lists its numbers; a quality row or a stray non-object line after the losses hides nothing."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1,"loss_d":0.5}\n')
    assert latest_values(path, ("loss_d",)) == {"step": 1, "loss_d": 0.5}
    path.write_bytes(b'{"step":1,"loss_d":0.5}\n{"step":1,"kind":"log","message":"a quality point"}\n[1, 2]\n')
    found = latest_values(path, ("loss_d",))
    assert found["loss_d"] == 0.5 and found["message"] == "a quality point"
    assert latest_values(tmp_path / "none.jsonl", ("loss_d",)) == {}


def test_numpy_numbers_from_a_users_loop_are_written_as_plain_numbers(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as writer:
        writer.write([{"step": np.int64(3), "loss_d": np.float32(0.5)}])
    assert path.read_text() == '{"step":3,"loss_d":0.5}\n'


def test_a_short_write_is_continued_until_the_whole_batch_is_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """os.write may take part of a buffer (a signal, a pipe, some file systems): the rest must follow, not vanish."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as writer:
        writer.write([{"step": s, "loss_d": 0.5} for s in range(3)])
    monkeypatch.undo()
    assert [r["step"] for r in JsonlTail(path).read()] == [0, 1, 2]


def test_a_new_jsonl_file_is_readable_by_all_and_writable_by_its_owner_only(tmp_path: Path):
    old_mask = os.umask(0o022)
    try:
        JsonlWriter(tmp_path / "metrics.jsonl").close()
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE((tmp_path / "metrics.jsonl").stat().st_mode) == 0o644


def test_closing_a_writer_twice_closes_only_its_own_file(tmp_path: Path):
    """The second close must not close whatever file descriptor the number now stands for (stdout here)."""
    writer = JsonlWriter(tmp_path / "metrics.jsonl")
    writer.close()
    writer.close()
    os.fstat(1)  # still open


def test_a_tail_reads_what_comes_after_where_it_starts_and_at_most_what_it_is_asked_for(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step":1}\n{"step":2}\n')
    from_end = JsonlTail(path, from_end=True)
    assert from_end.read() == [] and not from_end.reset  # opened on a live run: only what comes next
    tail = JsonlTail(path)
    assert tail.read(max_bytes=14) == [{"step": 1}] and not tail.reset  # the first read is no rewind
    assert tail.pending_bytes == 8
    with open(path, "ab") as handle:
        handle.write(b'{"step":3}\n')
    assert tail.read() == [{"step": 2}, {"step": 3}] and from_end.read() == [{"step": 3}]
    started = JsonlTail(path)
    started.start_at(11)  # the start of the second line
    assert started.read() == [{"step": 2}, {"step": 3}] and not started.reset


def test_a_log_line_that_is_not_utf8_reads_with_a_replacement_character(tmp_path: Path):
    path = tmp_path / "worker.log"
    path.write_bytes(b"caf\xe9 au lait\nsecond\nthird\n")
    tail = TextTail(path)
    assert tail.read(max_bytes=25) == ["caf\ufffd au lait", "second"]


def test_every_unreadable_line_is_counted(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'not json\n{"step":1}\n{"step":\n')
    tail = JsonlTail(path)
    assert tail.read() == [{"step": 1}] and tail.bad_lines == 2


def test_corrupted_status_reads_as_unknown_with_the_problem_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The problem is a value the viewer shows; nothing is printed behind a full-screen dashboard's back."""
    run = RunDir(tmp_path)
    run.status.write_text('{"state": "runn')
    status = read_status(run)
    assert effective_state(status) == "unknown"
    assert "status.json is not valid JSON" in status["problem"]
    assert capsys.readouterr().err == ""
    run.status.unlink()
    run.status.mkdir()  # there, but no file to read
    assert read_status(run) == {"problem": f"{run.status} cannot be read (Is a directory)"}


def test_files_the_run_did_not_write_are_not_its_samples(tmp_path: Path):
    """A copy a user made beside the grids neither counts as a sample nor stops a rewind."""
    run = RunDir(tmp_path)
    run.samples.mkdir()
    for name in ("step_0000100.png", "step_0000300.png", "step_0000300 (copy).png", "notes.txt", "step_12.png"):
        (run.samples / name).write_bytes(b"png")
    assert [p.name for p in run.sample_files()] == ["step_0000100.png", "step_0000300.png"]
    rewind(run, 200)
    assert sorted(p.name for p in run.samples.iterdir()) == [
        "notes.txt",
        "step_0000100.png",
        "step_0000300 (copy).png",
        "step_12.png",
    ]


def test_status_is_replaced_atomically(tmp_path: Path):
    run = RunDir(tmp_path)
    write_status(run, {"state": "running", "step": 3})
    assert read_status(run) == {"state": "running", "step": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert run.status.read_text() == '{\n  "state": "running",\n  "step": 3\n}'  # for a person who opens it


def test_a_dead_worker_reads_as_lost_and_a_silent_live_one_as_stalled():
    now = time.time()
    alive = {"state": "running", "heartbeat": now, "pid": os.getpid(), "host": this_host()}
    assert effective_state(alive, now) == "running"
    assert effective_state(alive, now + 60) == "stalled"  # this process is alive, but silent for a minute
    assert effective_state({**alive, "host": "elsewhere"}, now + 60) == "lost"  # only the beat tells there
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert effective_state({**alive, "pid": dead.pid}, now) == "lost"
    with subprocess.Popen(["sleep", "30"]) as newer:  # a process that took the pid of a worker gone since
        try:
            assert effective_state({**alive, "pid": newer.pid, "heartbeat": now - 60}, now) == "lost"
        finally:
            newer.kill()
    assert effective_state({**alive, "state": "finished", "heartbeat": now - 3600}, now) == "finished"
    assert effective_state(None) == "unknown"


def test_runs_resolve_by_name_path_or_newest(tmp_path: Path):
    root = tmp_path / "runs"
    for name in ("oldest", "older", "newer"):
        (root / name).mkdir(parents=True)
        (root / name / "config.toml").write_text("")
        time.sleep(0.02)
    (root / "notes").mkdir()  # a folder of the user's, with nothing of a run in it
    assert [run.name for run in list_runs(root)] == ["oldest", "older", "newer"]
    assert resolve_run(None, root).name == "newer"
    assert resolve_run("older", root).name == "older"
    assert resolve_run(str(root / "older"), root).name == "older"
    with pytest.raises(UserError, match=r"no run named 'nope' under .* \(runs there: oldest, older, newer\)"):
        resolve_run("nope", root)
    with pytest.raises(UserError, match=r"no run named 'notes' under .* \(runs there: oldest, older, newer\)"):
        resolve_run("notes", root)
    with pytest.raises(UserError, match="there are no runs under"):
        resolve_run(None, tmp_path / "empty")
    with pytest.raises(UserError, match=r"no run named 'nope' under .* and no run directory at that path$"):
        resolve_run("nope", tmp_path / "empty")  # no runs to hint at
    for name in ("fourth", "fifth", "sixth"):
        time.sleep(0.02)
        (root / name).mkdir()
        (root / name / "config.toml").write_text("")
    with pytest.raises(UserError, match=r"\(runs there: older, newer, fourth, fifth, sixth\)$"):  # the newest five
        resolve_run("nope", root)


def test_a_second_worker_cannot_take_the_run(tmp_path: Path):
    run = RunDir(tmp_path)
    old_mask = os.umask(0o022)
    try:
        held = acquire_lock(run)
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(run.lock.stat().st_mode) == 0o644  # anyone may read who holds the run
    try:
        with pytest.raises(RunLocked, match=f"already being trained by process {os.getpid()}"):
            acquire_lock(run)
    finally:
        os.close(held)
    os.close(acquire_lock(run))


def test_the_lock_holder_is_named_while_it_holds_the_run_and_nobody_after(tmp_path: Path):
    run = RunDir(tmp_path)
    assert lock_holder(run) is None  # no lock file yet
    held = acquire_lock(run)
    try:
        assert lock_holder(run) == str(os.getpid())
    finally:
        os.close(held)
    assert lock_holder(run) is None


@pytest.mark.parametrize(("content", "holder"), [(b"", "unknown"), (b"\xff4242\n", "\ufffd4242")])
def test_a_lock_held_by_a_process_that_wrote_no_pid_or_no_text_still_reads_as_held(
    tmp_path: Path, content: bytes, holder: str
):
    """Another tool, or a worker caught between taking the lock and writing its pid: held, said as best it can be."""
    import fcntl

    run = RunDir(tmp_path)
    run.lock.write_bytes(content)
    with open(run.lock, "rb+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lock_holder(run) == holder
        with pytest.raises(RunLocked, match=f"^run '{tmp_path.name}' is already being trained by process {holder}$"):
            acquire_lock(run)


def test_a_new_run_is_named_after_its_data_and_the_time_and_never_takes_a_name_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: object = None) -> Frozen:
            return cls(2026, 12, 5, 12, 30, 0)

    monkeypatch.setattr("ganterm.run.layout.datetime.datetime", Frozen)
    assert new_run_name("~/data/My Faces!/", tmp_path) == "my-faces-20261205-123000"
    assert new_run_name("XRAY-X", tmp_path) == "xray-x-20261205-123000"  # only what is not a letter or digit goes
    assert new_run_name("~/données/画像/", tmp_path) == "run-20261205-123000"  # nothing left of the name
    (tmp_path / "mnist5k-20261205-123000").mkdir()
    (tmp_path / "mnist5k-20261205-123000-2").mkdir()
    assert new_run_name("mnist5k", tmp_path) == "mnist5k-20261205-123000-3"
    assert check_run_name("a.b_c-1") == "a.b_c-1"
    with pytest.raises(UserError, match=r"^run name 'a b' is not a valid run name: use letters, digits"):
        check_run_name("a b")
    with pytest.raises(UserError, match=r"^--name '\.hidden' is not a valid run name: use letters, digits"):
        check_run_name(".hidden", "--name")
    long_name = "a" * 130 + "!" + "b" * 30  # its two ends, and how much was cut between them (tests/test_long_text.py)
    for name, shown in (("a" * 159 + "!", "a" * 159 + "!"), (long_name, clip(long_name, 160))):
        with pytest.raises(UserError, match=rf"^run name '{re.escape(shown)}' is not a valid run name"):
            check_run_name(name)  # up to 160 characters said whole, a longer one by its two ends


def test_a_new_run_claims_a_folder_made_by_hand_and_loses_a_name_another_start_took_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "mine").mkdir()  # empty: made by hand, or holding only a multi-machine run's nodes/
    old_mask = os.umask(0o022)
    try:
        claimed = claim_new_run(tmp_path, "mine", "mnist")
    finally:
        os.umask(old_mask)
    assert claimed is not None and claimed.path == tmp_path / "mine"
    assert claimed.metrics.read_bytes() == b"" and stat.S_IMODE(claimed.metrics.stat().st_mode) == 0o644
    # another start created metrics.jsonl right after this one looked: the exclusive create decides
    monkeypatch.setattr(RunDir, "exists", lambda run: False)
    assert claim_new_run(tmp_path, "mine", "mnist") is None


def test_a_status_that_is_json_but_no_object_reads_as_a_problem(tmp_path: Path):
    run = RunDir(tmp_path)
    run.status.write_text("[1, 2]")
    assert read_status(run) == {"problem": f"{run.status} does not hold an object"}


def test_a_worker_is_stale_only_after_twenty_silent_seconds_and_one_elsewhere_is_judged_by_its_beat():
    now = time.time()
    alive = {"state": "paused", "heartbeat": now, "pid": os.getpid(), "host": this_host()}
    assert effective_state(alive, now + 20) == "paused" and effective_state(alive, now + 21) == "stalled"
    for elsewhere in ({**alive, "host": "elsewhere"}, {**alive, "pid": None}):
        assert effective_state(elsewhere, now + 20) == "paused" and effective_state(elsewhere, now + 21) == "lost"
    assert effective_state({**alive, "heartbeat": "noon"}, now) == "lost"  # no beat to believe: beaten at 0
    assert effective_state({"step": 3}, now) == "unknown"


def test_the_status_board_beats_while_the_loop_is_busy_and_stops_when_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("ganterm.run.status.HEARTBEAT_SECONDS", 0.05)
    run = RunDir(tmp_path)
    board = StatusBoard(run, state="running", step=3)
    board.update()
    first = read_status(run)["heartbeat"]
    before = set(threading.enumerate())
    full = iter([True])  # the first beat meets a full disk; the ones after it get through

    def write(run: RunDir, status: dict) -> None:
        if next(full, False):
            raise OSError(errno.ENOSPC, "No space left on device")
        write_status(run, status)

    monkeypatch.setattr("ganterm.run.status.write_status", write)
    board.start()
    wait_for(lambda: read_status(run)["heartbeat"] > first, timeout=5, what="a heartbeat after the full disk")
    assert [thread.daemon for thread in set(threading.enumerate()) - before] == [True]  # never holds the exit
    board.close()
    last = read_status(run)
    time.sleep(0.2)
    assert read_status(run) == last and (last["state"], last["step"], last["pid"]) == ("running", 3, os.getpid())
    assert last["host"] == this_host()  # a viewer on this machine judges the worker by its pid
    assert board.state == "running"


def test_a_dead_worker_its_parent_has_not_reaped_reads_as_lost_and_another_users_as_alive(
    monkeypatch: pytest.MonkeyPatch,
):
    now = time.time()
    alive = {"state": "running", "heartbeat": now, "pid": os.getpid(), "host": this_host()}
    with subprocess.Popen(["true"]) as zombie:  # exits, and stays a zombie until waited for
        wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z")
        assert effective_state({**alive, "pid": zombie.pid}, now) == "lost"

    def not_yours(pid: int, signal_number: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_yours)  # a worker of another user on a shared machine
    assert effective_state({**alive, "pid": 1}, now) == "running"


def test_a_stall_is_said_with_the_clock_time_of_the_last_beat_and_how_to_let_the_worker_go_on():
    beat = time.mktime((2026, 12, 5, 12, 34, 56, 0, 0, -1))
    assert stalled_reason({"heartbeat": beat, "pid": 4242}) == (
        "its worker (pid 4242) is alive but has not reported since 12:34:56: it was stopped "
        "(kill -CONT 4242 lets it go on) or the machine is short of memory"
    )


def test_a_durable_write_on_a_file_system_that_cannot_fsync_a_folder_still_replaces_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Some network and FUSE file systems refuse fsync on a folder (EINVAL): the file is written all the same."""
    real_fsync = os.fsync

    def fsync_refusing_folders(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_refusing_folders)
    target = tmp_path / "latest.safetensors"
    write_atomic(target, b"new", durable=True)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["latest.safetensors"]
