"""A user's script on ganterm.Run, run as its own process: the plain form, its ends, resuming, config, its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from tests.conftest import run_cli


def run_script(folder: Path, body: str) -> subprocess.CompletedProcess[str]:
    """`body` as a script in `folder` (after `import ganterm`), run there as a user runs theirs."""
    script = folder / "train.py"
    script.write_text("import sys\nimport ganterm\n" + textwrap.dedent(body), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=60)


def steps_logged(run: RunDir) -> list[int]:
    return [row["step"] for row in read_jsonl(run.metrics)]


@pytest.mark.parametrize("ending", ["run.finish()", "pass  # the script just ends"])
def test_a_run_without_a_with_block_ends_finished_at_finish_or_at_exit(tmp_path: Path, ending: str):
    result = run_script(
        tmp_path,
        f"""
        run = ganterm.Run("plain", total=5)
        for step in run.steps(5):
            run.log(step, loss_d=0.5)
        {ending}
        """,
    )
    assert result.returncode == 0, result.stderr
    run = RunDir(tmp_path / "runs" / "plain")
    assert read_status(run)["state"] == "finished" and steps_logged(run) == [1, 2, 3, 4, 5]


def test_a_script_that_dies_leaves_its_run_failed_with_the_reason_in_one_line(tmp_path: Path):
    result = run_script(
        tmp_path,
        """
        run = ganterm.Run("broken")
        run.log(1, loss_d=0.5)
        raise ValueError("loss is nan\\nat step 1 of epoch 0")
        """,
    )
    assert result.returncode == 1 and "Traceback" in result.stderr  # the user's own traceback, as without ganterm
    run = RunDir(tmp_path / "runs" / "broken")
    status = read_status(run)
    assert status["state"] == "failed" and status["error"] == "ValueError: loss is nan"
    assert steps_logged(run) == [1]


def test_ctrl_c_in_a_script_leaves_its_run_stopped(tmp_path: Path):
    result = run_script(tmp_path, 'run = ganterm.Run("interrupted")\nrun.log(1, loss_d=0.5)\nraise KeyboardInterrupt\n')
    assert result.returncode != 0
    assert read_status(RunDir(tmp_path / "runs" / "interrupted"))["state"] == "stopped"


RESUMABLE = """
run = ganterm.Run("wgan-gp", total=40, resume={resume}, on_checkpoint=lambda step: f"ckpt-{{step}}.pt")
print("start", run.start_step, run.resumed_from and run.resumed_from.name)
for step in run.steps(40, start=run.start_step + 1):
    run.log(step, loss_d=1.0 / step)
    if step == 20:
        open(f"ckpt-{{step}}.pt", "w").close()
        run.checkpoint()
    if step == 30 and {dies}:
        raise RuntimeError("the machine went away")
run.finish()
"""


def test_a_script_run_again_with_resume_continues_from_its_checkpoint_and_logs_each_step_once(tmp_path: Path):
    first = run_script(tmp_path, RESUMABLE.format(resume="False", dies=True))
    assert "RuntimeError" in first.stderr
    run = RunDir(tmp_path / "runs" / "wgan-gp")
    assert steps_logged(run)[-1] == 30 and read_status(run)["state"] == "failed"

    again = run_script(tmp_path, RESUMABLE.format(resume="True", dies=False))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "start 20 ckpt-20.pt"
    assert steps_logged(run) == list(range(1, 41))
    assert read_status(run)["state"] == "finished"


def test_the_same_name_again_without_resume_says_how_to_continue_it(tmp_path: Path):
    assert run_script(tmp_path, 'ganterm.Run("taken").finish()').returncode == 0
    result = run_script(tmp_path, 'ganterm.Run("taken").finish()')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ganterm.errors.UserError: run 'taken' already exists under runs/; "
        "continue it with ganterm.Run('taken', resume=True), or pick another name or leave it out"
    )
    assert steps_logged(RunDir(tmp_path / "runs" / "taken")) == []


def test_resume_allow_starts_a_missing_run_and_resume_true_refuses_one(tmp_path: Path):
    result = run_script(tmp_path, 'ganterm.Run("nowhere", resume=True).finish()')
    assert result.returncode == 1 and "there is no run 'nowhere' under runs/ to resume" in result.stderr
    assert not (tmp_path / "runs" / "nowhere").exists()
    result = run_script(tmp_path, 'run = ganterm.Run("fresh", resume="allow")\nprint(run.start_step)\nrun.finish()')
    assert result.returncode == 0 and result.stdout == "0\n", result.stderr
    assert read_status(RunDir(tmp_path / "runs" / "fresh"))["state"] == "finished"


CONFIGURED = """
import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=2e-4)
parser.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999))
parser.add_argument("--data", type=Path, default=Path("data/celeba"))
parser.add_argument("--resume-from", default=None)
args = parser.parse_args([])
run = ganterm.Run("configured", config=args)
run.log(1, loss_d=0.5)
run.finish()
"""


def test_a_scripts_argparse_settings_are_kept_with_the_run_and_shown_by_ganterm_runs(tmp_path: Path):
    assert run_script(tmp_path, CONFIGURED).returncode == 0
    run = RunDir(tmp_path / "runs" / "configured")
    assert json.loads(run.loop_config.read_text()) == {
        "lr": 0.0002,
        "betas": [0.5, 0.999],
        "data": "PosixPath('data/celeba')",  # not JSON: its repr, not dropped
        "resume_from": None,
    }
    listing = run_cli(tmp_path, "runs")
    assert "lr=0.0002 betas=[0.5,0.999]" in listing.stdout, listing.stdout
    record = json.loads(run_cli(tmp_path, "runs", "--json").stdout)[0]
    assert record["config"]["lr"] == 0.0002


def test_what_the_script_prints_reaches_the_log_panel_and_still_the_console(tmp_path: Path):
    result = run_script(
        tmp_path,
        """
        run = ganterm.Run("chatty")
        print("epoch 1: loss 0.5")
        print("warning: lr is high", file=sys.stderr)
        run.finish()
        print("after the run")
        """,
    )
    assert result.stdout == "epoch 1: loss 0.5\nafter the run\n" and result.stderr == "warning: lr is high\n"
    log = RunDir(tmp_path / "runs" / "chatty").log.read_text()
    assert "epoch 1: loss 0.5\n" in log and "warning: lr is high\n" in log
    assert "step 0: finished" in log and "after the run" not in log


def test_capture_output_false_keeps_the_scripts_prints_out_of_the_log(tmp_path: Path):
    result = run_script(tmp_path, 'run = ganterm.Run("quiet", capture_output=False)\nprint("mine")\nrun.finish()')
    assert result.stdout == "mine\n"
    assert "mine" not in RunDir(tmp_path / "runs" / "quiet").log.read_text()


def test_a_progress_bar_redrawn_in_place_is_one_line_of_the_log_as_last_drawn(tmp_path: Path):
    """tqdm redraws with \\r: the console gets every redraw, the log panel the line as it ended."""
    result = run_script(
        tmp_path,
        """
        run = ganterm.Run("bar")
        for done in range(0, 101, 25):
            print(f"\\rtraining {done}%", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        print("\\rhalf a line", end="")
        run.finish()
        """,
    )
    assert result.stderr.count("training") == 5  # every redraw (read back with \\r as a newline)
    log = RunDir(tmp_path / "runs" / "bar").log.read_text()
    assert "\r" not in log and "training 100%\n" in log and "training 50%" not in log
    assert "half a line\n" in log  # an unfinished last line is kept when the run ends


LOOP_CHECKPOINTS = """
import shutil
def save(step):
    shutil.copy({source!r}, "loop.safetensors")
    return "loop.safetensors"
run = ganterm.Run("own", on_checkpoint=save)
run.log(8, loss_d=0.5)
{save}
run.finish()
"""


@pytest.mark.parametrize(
    ("saves", "said"),
    [
        ("", "has saved no checkpoint file through ganterm.Run's on_checkpoint"),
        ("run.checkpoint()", "hold the loop's own networks, not a ganterm generator"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_sample_and_eval_of_a_loop_without_a_ganterm_generator_say_so_without_loading_torch(
    tmp_path: Path, command: str, saves: str, said: str
):
    (tmp_path / "weights.bin").write_bytes(b"not a ganterm checkpoint")
    assert run_script(tmp_path, LOOP_CHECKPOINTS.format(source="weights.bin", save=saves)).returncode == 0
    poisoned = tmp_path / "no-torch" / "torch"  # torch takes seconds to load: it must not be, to say this
    poisoned.mkdir(parents=True)
    (poisoned / "__init__.py").write_text("raise ImportError('torch was loaded')\n")
    result = run_cli(
        tmp_path, command, "own", env={"PYTHONPATH": f"{poisoned.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    )
    assert result.returncode != 0 and said in result.stderr and "checkpoint.every" not in result.stderr
    assert "Traceback" not in result.stderr and "torch was loaded" not in result.stderr


def test_sample_of_a_loop_that_saved_a_ganterm_checkpoint_draws_from_it(tmp_path: Path, trained_run: RunDir):
    source = str(sorted(trained_run.checkpoints.glob("step_*.safetensors"))[-1])
    assert run_script(tmp_path, LOOP_CHECKPOINTS.format(source=source, save="run.checkpoint()")).returncode == 0
    result = run_cli(tmp_path, "sample", "own", "-n", "4", "--out", "grid.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_ganterm_train_resume_of_a_loops_run_says_the_loop_continues_it(tmp_path: Path):
    assert run_script(tmp_path, 'ganterm.Run("own").log(1, loss_d=0.5)').returncode == 0
    result = run_cli(tmp_path, "train", "--resume", "own", "--dry-run")  # were it to start, nothing would
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "run 'own' is fed by its own training loop, which ganterm train cannot continue" in result.stderr
    assert steps_logged(RunDir(tmp_path / "runs" / "own")) == [1]  # no worker took it over
