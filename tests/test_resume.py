"""A run trained 2N steps equals one trained N steps, stopped, and resumed for N more: bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ganterm.run.checkpoints import latest_step_file
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from tests.conftest import tiny_config, train_in_process

N = 6
VOLATILE = {"t", "img_per_s"}  # wall-clock readings differ between any two runs


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path):
    straight = RunDir(tmp_path / "straight")
    assert train_in_process(straight, tiny_config(f"train.steps={2 * N}", "loss.label_noise=0.1")) == 0

    split = RunDir(tmp_path / "split")
    assert train_in_process(split, tiny_config(f"train.steps={N}", "loss.label_noise=0.1")) == 0
    halfway = latest_step_file(split)
    assert halfway is not None and halfway.name == f"step_{N:07d}.safetensors"
    split.config.write_text(tiny_config(f"train.steps={2 * N}", "loss.label_noise=0.1").to_toml())
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
