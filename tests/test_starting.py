"""Starting a run tells the truth about its worker: it trains, it failed, or it died."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ganterm import launch
from ganterm.config import load_config
from ganterm.errors import UserError
from ganterm.launch import Plan, create_run
from ganterm.run.layout import RunDir
from ganterm.run.status import this_host, write_status
from ganterm.scale import Scale
from tests.conftest import a_rival_claims_between_check_and_create, run_cli

CONFIG = load_config()

TINY = [
    "--data", "ring", "--set", "model.width=16", "--set", "model.z_dim=8", "--set", "train.batch_size=32",
    "--set", "train.device=cpu", "--set", "log.every=5", "--set", "quality.every=0",
    "--set", "sample.every=0", "--set", "checkpoint.every=0",
]  # fmt: skip


def test_detach_reports_a_worker_that_died_while_starting(tmp_path: Path):
    """A worker killed before its first status (here: the moment its interpreter starts) is no 'started'."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os\n"
        "if b'ganterm.training.worker' in open('/proc/self/cmdline', 'rb').read():\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    python_path = os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])
    result = run_cli(tmp_path, "train", "--detach", "--name", "doomed", "--steps", "20", *TINY,
                     env={"PYTHONPATH": python_path})  # fmt: skip
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "the worker died while starting" in result.stderr and "Traceback" not in result.stderr


def test_resuming_shows_only_what_the_new_worker_says(tmp_path: Path):
    first = run_cli(tmp_path, "train", "--name", "again", "--steps", "10", *TINY, "--no-dashboard")
    assert first.returncode == 0, first.stderr
    log = RunDir(tmp_path / "runs" / "again").log
    assert "step 10: finished" in log.read_text()
    second = run_cli(tmp_path, "train", "--resume", "again", "--steps", "20", "--detach")
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    # the first worker's lines ("step 0: running", "step 10: finished") are not shown as the new one's
    assert "step 10: finished" not in second.stdout and "step 0: running" not in second.stdout


def test_train_without_the_dashboard_prints_one_format_and_one_finished_line(tmp_path: Path):
    """Piped, the worker's own lines and the progress lines read alike: the run's name, then what happened."""
    result = run_cli(tmp_path, "train", "--name", "plain", "--steps", "20", *TINY, "--no-dashboard")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("plain: ") for line in lines), result.stdout
    assert [line for line in lines if "finished" in line] == ["plain: finished at step 20/20"], result.stdout


def test_two_trains_started_at_once_under_one_name_the_loser_gets_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Right after one `ganterm train --name same` looks, another creates the run: one of them may have it."""
    rivals = a_rival_claims_between_check_and_create(monkeypatch, lambda name: create_run(CONFIG, name, tmp_path))
    with pytest.raises(UserError, match=r"^run 'same' already exists under .*; pick another --name or --resume same"):
        create_run(CONFIG, "same", tmp_path)
    assert rivals[-1].config.read_text(encoding="utf-8") == CONFIG.to_toml()


def test_two_unnamed_trains_started_at_once_get_a_run_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rivals = a_rival_claims_between_check_and_create(monkeypatch, lambda name: create_run(CONFIG, name, tmp_path))
    run = create_run(CONFIG, None, tmp_path)
    assert run.name == f"{rivals[-1].name}-2" and run.config.exists()


def test_a_folder_holding_only_another_machines_nodes_is_still_free(tmp_path: Path):
    (tmp_path / "shared" / "nodes" / "1").mkdir(parents=True)
    assert create_run(CONFIG, "shared", tmp_path).config.exists()


def test_two_resumes_started_at_once_start_one_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The second `ganterm train --resume` comes while the first is between its check and its worker's start."""
    run = create_run(CONFIG, "again", tmp_path)
    write_status(run, {"state": "finished", "pid": 1, "host": this_host(), "heartbeat": time.time()})
    plan = Plan(CONFIG, run)
    started: list[int] = []

    def fake_worker(run: RunDir, *args: object, **kwargs: object) -> int:
        started.append(os.getpid())
        write_status(run, {"state": "starting", "pid": os.getpid(), "host": this_host(), "heartbeat": time.time()})
        return os.getpid()

    real_ensure_idle, outcome, rivals = launch.ensure_idle, [], []

    def ensure_idle_then_a_rival_resumes(run: RunDir, **kwargs: object) -> None:
        real_ensure_idle(run, **kwargs)
        if not outcome:
            outcome.append(None)
            rival = threading.Thread(target=lambda: outcome.append(_start(plan)))
            rival.start()
            rival.join(1.0)  # what it does in that time, it does before this one starts its worker
            rivals.append(rival)

    monkeypatch.setattr(launch, "start_worker", fake_worker)
    monkeypatch.setattr(launch, "ensure_idle", ensure_idle_then_a_rival_resumes)
    launch.start_run(plan, None, tmp_path, Scale(), say=lambda line: None)
    rivals[0].join(10)  # on a loaded machine it may end after the join above: its answer comes last then
    assert started == [os.getpid()]
    assert any(isinstance(o, UserError) and "is starting; stop it first" in str(o) for o in outcome), outcome


def _start(plan: Plan) -> object:
    try:
        return launch.start_run(plan, None, Path("unused"), Scale(), say=lambda line: None)
    except UserError as error:
        return error


def test_a_resume_of_a_new_run_before_its_own_worker_starts_leaves_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`ganterm train --name new` has made the run; a `--resume new` starts a worker before it does."""
    started: list[int] = []

    def fake_worker(run: RunDir, *args: object, **kwargs: object) -> int:
        started.append(os.getpid())
        write_status(run, {"state": "starting", "pid": os.getpid(), "host": this_host(), "heartbeat": time.time()})
        return os.getpid()

    real_create_run = launch.create_run

    def create_then_a_rival_resumes(*args: object) -> RunDir:
        run = real_create_run(*args)
        launch.start_run(Plan(CONFIG, run), None, tmp_path, Scale(), say=lambda line: None)
        return run

    monkeypatch.setattr(launch, "start_worker", fake_worker)
    monkeypatch.setattr(launch, "create_run", create_then_a_rival_resumes)
    with pytest.raises(UserError, match="run 'new' is starting; stop it first"):
        launch.start_run(Plan(CONFIG), "new", tmp_path, Scale(), say=lambda line: None)
    assert started == [os.getpid()]
