"""Starting a run tells the truth about its worker: it trains, it failed, or it died."""

from __future__ import annotations

import os
from pathlib import Path

from ganterm.run.layout import RunDir
from tests.conftest import run_cli

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
