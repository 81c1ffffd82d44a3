"""The CUDA path: bf16 autocast, data kept on the GPU, compile, resume, and the GPU header.

Skipped where torch sees no CUDA GPU; run them on a GPU machine with `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganterm.run.checkpoints import latest_step_file
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training.sample import render_checkpoint
from tests.conftest import tiny_config, train_in_process

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU here")


def _losses_finite(run: RunDir) -> bool:
    rows = [row for row in read_jsonl(run.metrics) if "loss_d" in row]
    return bool(rows) and all(math.isfinite(row["loss_d"]) and math.isfinite(row["loss_g"]) for row in rows)


def test_training_on_cuda_logs_finite_losses_and_writes_a_checkpoint_the_cpu_can_sample(tmp_path: Path):
    run = RunDir(tmp_path / "gpu")
    config = tiny_config("train.device=cuda", "train.steps=40", "checkpoint.every=20", "sample.every=20")
    assert train_in_process(run, config) == 0
    assert _losses_finite(run)
    status = read_status(run)
    assert status is not None
    assert status["state"] == "finished"
    assert re.fullmatch(r"cuda:0 \(.+\)", status["device"]), status["device"]
    rows = read_jsonl(run.metrics)
    assert any(row.get("gpu_mem_gb", 0) > 0 for row in rows)
    checkpoint = latest_step_file(run)
    assert checkpoint is not None
    assert all(tensor.device.type == "cpu" for tensor in load_file(str(checkpoint)).values())
    image, step = render_checkpoint(checkpoint, 16, 0, None, None)
    assert step == 40 and image.width > 0


def test_a_cuda_run_resumes_and_logs_every_step_once(tmp_path: Path):
    run = RunDir(tmp_path / "resumed")
    assert train_in_process(run, tiny_config("train.device=cuda", "train.steps=20", "checkpoint.every=10")) == 0
    run.config.write_text(tiny_config("train.device=cuda", "train.steps=40", "checkpoint.every=10").to_toml())
    assert train_in_process(run, resume=latest_step_file(run)) == 0
    assert [row["step"] for row in read_jsonl(run.metrics) if "loss_d" in row] == list(range(1, 41))
    assert _losses_finite(run)


def test_compiled_models_train_on_cuda(tmp_path: Path):
    run = RunDir(tmp_path / "compiled")
    assert train_in_process(run, tiny_config("train.device=cuda", "train.compile=true", "train.steps=10")) == 0
    assert _losses_finite(run)


def test_the_header_reads_gpu_use_through_nvml():
    pytest.importorskip("pynvml", reason="nvidia-ml-py (the gpu extra) is not installed")
    from ganterm.dashboard.gpu import gpu_usage

    reading = gpu_usage({"device": f"cuda:0 ({torch.cuda.get_device_name(0)})"})
    assert reading is not None and re.fullmatch(r"GPU \d+% · \d+\.\d/\d+\.\d GB", reading), reading
    assert gpu_usage({"device": "cpu (2 threads)"}) is None
