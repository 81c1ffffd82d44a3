"""train.threads: a tiny model or a busy machine gets one thread, a big model on idle cores gets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganterm.config import load_config
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training import threads as threads_module
from ganterm.training.models import build_discriminator, build_generator
from ganterm.training.threads import choose_threads, forward_flops

CONFIGS = Path(__file__).parent.parent / "configs"
CPU = torch.device("cpu")


def _flops(recipe: Path | None, *overrides: str) -> float:
    config = load_config(recipe, list(overrides))
    generator, discriminator = build_generator(config), build_discriminator(config)
    return forward_flops(generator, discriminator, config.model.z_dim, config.train.batch_size)


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A two-core machine, with no OMP_NUM_THREADS set; each test says how idle its cores are."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_module, "usable_cores", lambda: {0, 1})
    return monkeypatch


@pytest.mark.parametrize(("idle", "ring", "dcgan"), [(2.0, 1, 2), (1.0, 1, 1), (0.1, 1, 1)])
def test_auto_gives_a_toy_one_thread_and_a_dcgan_the_idle_cores(
    two_cores: pytest.MonkeyPatch, idle: float, ring: int, dcgan: int
):
    two_cores.setattr(threads_module, "idle_cores", lambda: idle)
    ring_flops = _flops(CONFIGS / "ring.toml")
    dcgan_flops = _flops(None, "model.channels=1", "model.image_size=28")  # the mnist5k default
    assert choose_threads("auto", CPU, lambda: ring_flops) == (
        ring,
        "auto: 0.14 GFLOP a batch's forward pass, too little to share among threads",
    )
    threads, why = choose_threads("auto", CPU, lambda: dcgan_flops)
    assert threads == dcgan and why == f"auto: 1.78 GFLOP a batch's forward pass, {idle:.1f} of 2 cores idle"


def test_a_number_or_omp_num_threads_overrides_auto(two_cores: pytest.MonkeyPatch):
    two_cores.setattr(threads_module, "idle_cores", lambda: 2.0)
    assert choose_threads(3, CPU, lambda: 0.0) == (3, "train.threads")
    two_cores.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads("auto", CPU, lambda: 1e12) == (torch.get_num_threads(), "OMP_NUM_THREADS")


def test_counting_flops_leaves_the_models_as_they_were():
    config = load_config(None, ["model.channels=1", "model.image_size=28", "model.spectral_norm=false"])
    generator, discriminator = build_generator(config), build_discriminator(config)
    before = [tensor.clone() for tensor in (*generator.state_dict().values(), *discriminator.state_dict().values())]
    forward_flops(generator, discriminator, config.model.z_dim, 64)
    after = [*generator.state_dict().values(), *discriminator.state_dict().values()]
    assert generator.training and discriminator.training
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # BatchNorm's running statistics too


def test_idle_cores_are_counted_on_this_machine():
    idle = threads_module.idle_cores(0.05)
    assert idle is None or 0.0 <= idle <= len(threads_module.usable_cores()) + 0.01


def test_the_ring_recipe_trains_on_one_thread_where_torch_would_take_every_core(tmp_path: Path):
    """No OMP_NUM_THREADS, as a user's shell has it: torch alone would take a thread per core."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    args = ["train", str(CONFIGS / "ring.toml"), "--name", "ring", "--steps", "5", "--no-dashboard",
            "--set", "quality.every=0", "--set", "sample.every=0", "--set", "checkpoint.every=0"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "ganterm", *args], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_status(RunDir(tmp_path / "runs" / "ring"))["device"] == "cpu (1 threads)"
    assert "ring: 1 CPU thread(s): auto: 0.14 GFLOP a batch's forward pass" in result.stdout
