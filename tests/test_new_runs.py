"""Runs that appear under a watched logdir after the viewer opened: found, shown with their own colour, said once."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from torch.utils.tensorboard import SummaryWriter

import ganterm
from ganterm.dashboard.app import Dashboard
from ganterm.sources import open_runs
from ganterm.sources.new_runs import NewRuns, logdirs
from tests.dashboard_runs import settle
from tests.stylegan_folder import write_stylegan_folder


def _summary_writer_run(folder: Path, steps: int) -> None:
    writer = SummaryWriter(str(folder))
    for step in range(steps):
        writer.add_scalar("Loss_D", 1.0 + step / 100, step)
        writer.add_scalar("Loss_G", 2.0 - step / 100, step)
    writer.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_run_is_found_once_and_the_folders_are_walked_only_when_a_walk_is_due(tmp_path: Path):
    logdir = tmp_path / "logs"
    _summary_writer_run(logdir / "exp1", 3)
    clock = Clock()
    shown = open_runs([str(logdir)])
    new_runs = NewRuns(logdirs([str(logdir)]), shown, every=5.0, clock=clock)
    _summary_writer_run(logdir / "exp2" / "seed1", 3)
    clock.now = 4.9
    assert new_runs.poll() == [] and new_runs.walks == 0  # polled at every refresh, it walks only now and then
    clock.now = 5.0
    assert [run.name for run in new_runs.poll()] == ["exp2/seed1"]
    clock.now = 10.0
    assert new_runs.poll() == [] and new_runs.walks == 2  # each run once


async def test_runs_that_appear_under_a_watched_logdir_join_the_view_with_their_own_colour(tmp_path: Path):
    logdir = tmp_path / "logs"
    _summary_writer_run(logdir / "exp1", 40)
    shown = open_runs([str(logdir)])
    app = Dashboard(shown, tmp_path, refresh_per_second=20, new_runs=NewRuns(logdirs([str(logdir)]), shown, every=0.1))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert [watched.name for watched in app.watched.values()] == ["exp1"]
        _summary_writer_run(logdir / "exp2", 30)
        write_stylegan_folder(logdir / "00001-mnist", ticks=4)
        deadline = time.monotonic() + 30  # a walk every 0.1 s; a busy machine (the whole suite) takes seconds
        while len(app.watched) < 3 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await settle(pilot, app)
        watched = {w.name: w for w in app.watched.values()}
        assert set(watched) == {"exp1", "exp2", "00001-mnist"}
        assert len({w.colour for w in watched.values()}) == 3
        assert watched["exp2"].store.rows == 30 and watched["00001-mnist"].source.kind == "stylegan"
        said = [notification.message for notification in app._notifications if "new run" in notification.message]
        assert len(said) in (1, 2) and all(line.count("\n") == 0 for line in said)
        assert "exp2" in " ".join(said) and "00001-mnist" in " ".join(said)
        assert "comparing 3 runs" in str(app.query_one("#header").render())


def test_without_the_dashboard_a_run_that_appears_gets_its_lines_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import ganterm.progress

    logdir = tmp_path / "logs"
    _summary_writer_run(logdir / "exp1", 40)
    shown = open_runs([str(logdir)])
    waits = 0

    def sleep(seconds: float) -> None:
        """A poll once all is read is followed by a short real wait (the folder is walked at most every 20
        walks' time), the first by a new run, the fourth by Ctrl-C."""
        nonlocal waits
        waits += seconds >= 1.0
        time.sleep(0.2 if seconds >= 1.0 else 0.0)
        if waits == 1 and not (logdir / "exp2").exists():
            _summary_writer_run(logdir / "exp2", 30)
        if waits == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(ganterm.progress, "time", SimpleNamespace(time=time.time, monotonic=time.monotonic,
                                                                  sleep=sleep))  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=300)
    ganterm.progress.follow_read_only(shown, console, new_runs=NewRuns(logdirs([str(logdir)]), shown, every=0.0))
    lines = out.getvalue().splitlines()
    assert "exp2: a new run in the watched folder" in lines
    assert any(line.startswith("exp2: step 29  loss_d ") for line in lines)
    assert lines[-2:] == ["exp1: left at step 39; its writer goes on", "exp2: left at step 29; its writer goes on"]


def test_watch_into_a_file_follows_a_logdir_until_it_is_killed(tmp_path: Path):
    _summary_writer_run(tmp_path / "logs" / "exp1", 50)
    code = Path(ganterm.__file__).parents[1]
    with open(tmp_path / "watch.log", "wb") as out:  # as `nohup ganterm watch logs > watch.log &` leaves it
        watcher = subprocess.Popen([sys.executable, "-m", "ganterm", "watch", "logs"], cwd=tmp_path, stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(code)})  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while b"step 49  loss_d" not in (tmp_path / "watch.log").read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            watcher.terminate()  # kill's SIGTERM
            assert watcher.wait(timeout=30) == 0
        finally:
            watcher.kill()
    lines = (tmp_path / "watch.log").read_text().splitlines()
    assert lines[0].startswith("exp1: watching it read-only (TensorBoard's writer writes it): it never finishes")
    assert lines[1:] == ["exp1: live at step 49", "exp1: step 49  loss_d 1.490  loss_g 1.510",
                         "exp1: left at step 49; its writer goes on"]  # fmt: skip


def test_a_walk_that_fails_finds_nothing_and_the_next_one_tries_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    import ganterm.sources.new_runs

    logdir = tmp_path / "logs"
    _summary_writer_run(logdir / "exp1", 3)
    clock = Clock()
    new_runs = NewRuns([logdir], [], every=5.0, clock=clock)
    clock.now = 5.0

    def removed_meanwhile(folder: Path, roles: object) -> list:
        raise FileNotFoundError(2, "No such file or directory", str(folder / "exp0"))

    monkeypatch.setattr(ganterm.sources.new_runs, "find_runs", removed_meanwhile)
    assert new_runs.poll() == []  # the viewer's reader thread goes on
    monkeypatch.undo()
    clock.now = 10.0
    assert [run.name for run in new_runs.poll()] == ["exp1"]
