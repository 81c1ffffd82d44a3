"""Resuming: bit for bit after a stop; from an older checkpoint, a new branch; past a damaged one, the newest intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganterm.run.checkpoints import latest_step_file, step_files
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.training.checkpoint import load_checkpoint
from tests.conftest import run_cli, tiny_config, train_in_process

N = 6
VOLATILE = {"t", "img_per_s"}  # wall-clock readings differ between any two runs


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


@pytest.mark.parametrize(
    "loss",
    [
        ["loss.label_noise=0.1"],
        ["loss.kind=wgan-gp", "train.n_critic=2"],  # interpolates drawn from the noise stream
        # lazy R1 and R2 every 4th D step: the split at step 6 falls between two of them
        ["loss.kind=rpgan", "loss.r1_gamma=0.1", "loss.r2_gamma=0.1", "loss.penalty_every=4"],
        ["train.lr_decay=0.5"],  # the rates fall over the second half, the one the resume trains
    ],
    ids=["nonsat", "wgan-gp", "rpgan-r1-r2", "lr-decay"],
)
def test_resumed_run_equals_uninterrupted_run(tmp_path: Path, loss: list[str]):
    straight = RunDir(tmp_path / "straight")
    assert train_in_process(straight, tiny_config(f"train.steps={2 * N}", *loss)) == 0

    split = RunDir(tmp_path / "split")
    # a decay over the last half leaves the first at full rate: so does a first half of N steps without one
    first_half = [option for option in loss if not option.startswith("train.lr_decay")]
    assert train_in_process(split, tiny_config(f"train.steps={N}", *first_half)) == 0
    halfway = latest_step_file(split)
    assert halfway is not None and halfway.name == f"step_{N:07d}.safetensors"
    split.config.write_text(tiny_config(f"train.steps={2 * N}", *loss).to_toml())
    assert train_in_process(split, resume=halfway) == 0

    final_straight = load_file(str(latest_step_file(straight)))
    final_split = load_file(str(latest_step_file(split)))
    assert final_straight.keys() == final_split.keys()
    different = [k for k in final_straight if not torch.equal(final_straight[k], final_split[k])]
    assert different == []
    assert _stable(read_jsonl(straight.metrics)) == _stable(read_jsonl(split.metrics))
    assert [row["step"] for row in read_jsonl(split.metrics)] == list(range(1, 2 * N + 1))


def test_resume_rewinds_metrics_written_after_the_checkpoint(tmp_path: Path):
    run = RunDir(tmp_path / "crashed")
    assert train_in_process(run, tiny_config("train.steps=4")) == 0
    checkpoint = latest_step_file(run)
    # what a worker killed after step 4 would have left: more rows and a torn line
    with open(run.metrics, "ab") as handle:
        handle.write(b'{"step":5,"t":1.0,"loss_d":1.0}\n{"step":6,"t":1.0,"lo')
    run.config.write_text(tiny_config("train.steps=6").to_toml())
    assert train_in_process(run, resume=checkpoint) == 0
    steps = [row["step"] for row in read_jsonl(run.metrics)]
    assert steps == [1, 2, 3, 4, 5, 6]


def _run_with_checkpoints(root: Path, name: str = "branch") -> RunDir:
    """A finished 12-step run with checkpoints at 4, 8 and 12 (keep 3) and a sample at each."""
    run = RunDir(root / "runs" / name)
    config = tiny_config("train.steps=12", "checkpoint.every=4", "checkpoint.keep=3", "sample.every=4", data="ring")
    assert train_in_process(run, config) == 0
    return run


def test_resuming_from_an_older_checkpoint_makes_it_the_branch_point(tmp_path: Path):
    run = _run_with_checkpoints(tmp_path)
    older = run.checkpoints / "step_0000004.safetensors"
    result = run_cli(tmp_path, "train", "--resume", str(older), "--steps", "10", "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    said = [line for line in result.stdout.splitlines() if "rolled back to step 4" in line]
    assert len(said) == 1 and "step_0000008.safetensors, step_0000012.safetensors" in said[0], result.stdout
    (abandoned,) = run.checkpoints.glob("abandoned-*")
    assert sorted(p.name for p in abandoned.iterdir()) == ["step_0000008.safetensors", "step_0000012.safetensors"]
    # the new branch: 4 (kept, 3 newest), 8 and 10 from the resumed worker; latest on its end
    assert [step for step, _ in step_files(run.checkpoints)] == [4, 8, 10]
    assert load_checkpoint(run.checkpoints / "latest.safetensors").step == 10
    assert [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row] == list(range(1, 11))
    assert [step for step, _ in run.sample_steps()] == [4, 8, 10]
    sampled = run_cli(tmp_path, "sample", "branch", "-n", "4")
    assert sampled.returncode == 0 and "step 10" in sampled.stdout, sampled.stdout + sampled.stderr
    before = run.log.stat().st_size
    again = run_cli(tmp_path, "train", "--resume", "branch", "--steps", "14", "--no-dashboard")
    assert again.returncode == 0, again.stdout + again.stderr
    this_worker = run.log.read_text()[before:]  # (the CLI may echo the earlier workers' lines too: issue 12 item 8)
    assert "resumed from" in this_worker and "at step 10" in this_worker and "rolled back" not in this_worker
    assert [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row] == list(range(1, 15))


def test_a_damaged_newest_checkpoint_is_passed_over_by_sample_export_and_resume(tmp_path: Path):
    run = _run_with_checkpoints(tmp_path, "damaged")
    newest = run.checkpoints / "step_0000012.safetensors"
    with open(newest, "r+b") as handle:  # a flipped word near the end of the tensor data
        handle.seek(newest.stat().st_size - 8)
        handle.write(b"\x00\x00\xc0\x7f")
    for command in (["sample", "damaged", "-n", "4"], ["export", "damaged", "--out", str(tmp_path / "g.safetensors")]):
        result = run_cli(tmp_path, *command)
        assert result.returncode == 0, result.stdout + result.stderr
        warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and "step_0000012" in warning[0] and "step_0000008" in warning[0], result.stderr
        assert "step 8" in result.stdout, result.stdout
    result = run_cli(tmp_path, "train", "--resume", "damaged", "--steps", "14", "--no-dashboard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is damaged" in result.stdout and "at step 8" in result.stdout, result.stdout
    assert [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row] == list(range(1, 15))
    (abandoned,) = run.checkpoints.glob("abandoned-*")  # the damaged file, kept for the curious
    assert [p.name for p in abandoned.iterdir()] == ["step_0000012.safetensors"]


def test_resuming_from_an_exported_generator_is_refused_naming_what_it_is(tmp_path: Path):
    _run_with_checkpoints(tmp_path, "exported")
    out = tmp_path / "generator.safetensors"
    assert run_cli(tmp_path, "export", "exported", "--out", str(out)).returncode == 0
    result = run_cli(tmp_path, "train", "--resume", str(out), "--steps", "20", "--no-dashboard")
    assert result.returncode != 0
    assert "is an exported generator" in result.stderr and "ganterm sample can use it" in result.stderr, result.stderr
    assert "architecture" not in result.stderr and "Traceback" not in result.stderr


def test_a_run_whose_config_toml_was_cut_short_still_resumes_from_its_checkpoint(tmp_path: Path):
    """A checkpoint holds the whole config but for the notify URL, which alone is read from config.toml."""
    from ganterm.launch import plan_run

    run = RunDir(tmp_path / "runs" / "cut")
    assert train_in_process(run, tiny_config("train.steps=4", data="ring")) == 0
    run.config.write_text("[train]\nsteps = ", encoding="utf-8")  # as a kill in the middle of writing it leaves it
    plan = plan_run(None, {"train.steps": 8}, [], "cut", tmp_path / "runs")
    assert plan.checkpoint == latest_step_file(run) and plan.config.train.steps == 8 and plan.config.data.name == "ring"


def test_the_worker_replaces_config_toml_whole_so_a_viewer_reads_the_old_or_the_new_never_half(tmp_path: Path):
    """The worker writes the resolved config while a dashboard or `ganterm runs` may be reading config.toml: a new
    file renamed over the old one, which a reader holding it reads whole, not the old file cut and written again."""
    run = RunDir(tmp_path / "runs" / "whole")
    run.path.mkdir(parents=True)
    run.config.write_text(tiny_config("train.steps=2", data="ring").to_toml(), encoding="utf-8")
    with run.config.open("rb") as held:  # a viewer in the middle of reading it
        before = held.read()
        assert train_in_process(run) == 0
        held.seek(0)
        assert held.read() == before and os.fstat(held.fileno()).st_ino != run.config.stat().st_ino
    assert "steps = 2" in run.config.read_text(encoding="utf-8")
