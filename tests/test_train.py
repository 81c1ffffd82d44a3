"""The training loop: every objective trains, every step is logged, bad steps are dropped."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganterm.config import LOSS_KINDS
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training.data import load_dataset
from ganterm.training.losses import discriminator_targets
from ganterm.training.trainer import Trainer, complete_config
from tests import fault_worker
from tests.conftest import tiny_config, train_in_process

DESIGN_NAMES = {
    "loss_d",
    "loss_d_real",
    "loss_d_fake",
    "loss_g",
    "d_x",
    "d_g_z1",
    "d_g_z2",
    "grad_norm_d",
    "grad_norm_g",
    "lr_d",
    "lr_g",
    "img_per_s",
}


def _trainer(*overrides: str, data: str = "mnist5k") -> Trainer:
    config = tiny_config(*overrides, data=data)
    dataset = load_dataset(config)
    complete_config(config, dataset)
    return Trainer(config, dataset, torch.device("cpu"))


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("data", ["mnist5k", "ring"])
def test_every_loss_trains_a_few_steps_without_nan(kind: str, data: str):
    penalties = ["loss.r1_gamma=0.1", "loss.r2_gamma=0.1", "loss.penalty_every=1"] if kind == "rpgan" else []
    trainer = _trainer(f"loss.kind={kind}", "loss.label_smoothing=0.1", "loss.label_noise=0.05", *penalties, data=data)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    for _ in range(4):
        trainer.train_step()
    rows = trainer.collect_rows()
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert all(math.isfinite(row[name]) for name in trainer.statistics), row
        if trainer.family.probability:  # sigmoid means; the other families log D's raw outputs
            assert 0.0 <= row["d_x"] <= 1.0 and 0.0 <= row["d_g_z1"] <= 1.0 and 0.0 <= row["d_g_z2"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters(), strict=True))


def test_n_critic_and_no_ema_run():
    trainer = _trainer("train.n_critic=3", "train.ema=0", "model.minibatch_std=true", "model.spectral_norm=true")
    trainer.train_step()
    assert trainer.generator_ema is None and trainer.images_per_step == 48
    assert trainer.collect_rows()[0]["step"] == 1


def test_one_sided_smoothing_and_label_noise_targets():
    generator = torch.Generator().manual_seed(0)
    real = discriminator_targets(10_000, True, 0.1, 0.0, generator, torch.device("cpu"))
    fake = discriminator_targets(10_000, False, 0.1, 0.0, generator, torch.device("cpu"))
    assert torch.all(real == 0.9) and torch.all(fake == 0.0)
    noisy = discriminator_targets(10_000, True, 0.0, 0.2, generator, torch.device("cpu"))
    assert 0.17 < (noisy == 0.0).float().mean() < 0.23


def test_metrics_file_has_one_row_per_step_with_the_design_names(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    assert train_in_process(run, tiny_config("train.steps=7", "log.every=3")) == 0
    rows = read_jsonl(run.metrics)
    assert [row["step"] for row in rows] == list(range(1, 8))
    for row in rows:
        assert set(row) >= DESIGN_NAMES, DESIGN_NAMES - set(row)
        assert isinstance(row["t"], float) and row["img_per_s"] > 0
    status = read_status(run)
    assert status["state"] == "finished" and status["images_per_step"] == 16  # the dashboard's images-seen axis
    kinds = [event["kind"] for event in read_jsonl(run.events)]
    assert kinds == ["status", "sample", "checkpoint", "status"]


def test_a_learning_rate_decay_holds_both_rates_then_lowers_them_step_by_step_towards_zero(tmp_path: Path):
    run = RunDir(tmp_path / "decay")
    config = tiny_config("train.steps=8", "train.lr_g=1e-3", "train.lr_d=2e-3", "train.lr_decay=0.5")
    assert train_in_process(run, config) == 0
    rows = read_jsonl(run.metrics)
    # the last half, 4 steps: each row has the rate its own step took
    assert [row["lr_g"] for row in rows] == pytest.approx([1e-3] * 5 + [0.75e-3, 0.5e-3, 0.25e-3])
    assert [row["lr_d"] for row in rows] == pytest.approx([2e-3] * 5 + [1.5e-3, 1e-3, 0.5e-3])


def test_a_nan_step_is_skipped_and_logged_as_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trainer = _trainer()
    fault_worker.install_nan({3}, monkeypatch.setattr)
    for _ in range(2):
        trainer.train_step()
    weights = {k: v.detach().clone() for k, v in trainer.generator.named_parameters()}
    d_weights = [p.detach().clone() for p in trainer.discriminator.parameters()]
    adam_steps = [s["step"].clone() for s in trainer.opt_g.state.values()]
    trainer.train_step()
    assert all(torch.equal(v, dict(trainer.generator.named_parameters())[k]) for k, v in weights.items())
    assert all(torch.equal(a, b) for a, b in zip(d_weights, trainer.discriminator.parameters(), strict=True))
    assert [s["step"] for s in trainer.opt_g.state.values()] == adam_steps
    rows = trainer.collect_rows()
    assert rows[2]["nonfinite"] == 1 and math.isnan(rows[2]["loss_d"]) and trainer.bad_streak == 1
    trainer.train_step()
    assert trainer.collect_rows()[0].get("nonfinite") is None and trainer.bad_streak == 0
