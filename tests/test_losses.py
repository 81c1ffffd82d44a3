"""The objectives of each loss, their penalties, and what the worker logs for each family."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganterm.config import load_config
from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.training.losses import (
    discriminator_loss,
    generator_loss,
    input_gradient_norms,
    interpolates,
    paired_discriminator_loss,
)
from tests.conftest import tiny_config, train_in_process


def test_wgan_gp_and_rpgan_objectives():
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, -3.0])
    ones, zeros = torch.ones(2), torch.zeros(2)
    assert discriminator_loss("wgan-gp", real, ones) + discriminator_loss("wgan-gp", fake, zeros) == -4.0
    assert generator_loss("wgan-gp", fake) == 2.0
    gap = real - fake  # 4 and 4: D's loss softplus(-4), G's softplus(4)
    assert paired_discriminator_loss("rpgan", real, fake) == pytest.approx(math.log1p(math.exp(-4)))
    assert generator_loss("rpgan", fake, real) == pytest.approx(math.log1p(math.exp(gap[0].item())))


def test_a_penalty_sees_the_input_gradient_and_trains_d_through_it():
    """D(x) = w·x has ‖∇ₓD‖ = ‖w‖ = 5: WGAN-GP's term is (5 - 1)² and R1's ‖w‖² = 25; both reach w."""
    weight = torch.tensor([3.0, 4.0], requires_grad=True)
    inputs = torch.randn(8, 2).requires_grad_(True)
    norms = input_gradient_norms(inputs @ weight, inputs)
    assert torch.allclose(norms, torch.full((8,), 5.0))
    (norms - 1).square().mean().backward()
    assert torch.allclose(weight.grad, 2 * 4 * weight.detach() / 5)  # d/dw (‖w‖ - 1)² = 2(‖w‖ - 1) w/‖w‖


def test_interpolates_lie_between_real_and_fake():
    real, fake = torch.ones(64, 1, 2, 2), -torch.ones(64, 1, 2, 2)
    mixed = interpolates(real, fake, torch.Generator().manual_seed(0))
    assert mixed.requires_grad and (mixed.abs() <= 1).all()
    assert (mixed == mixed[:, :1, :1, :1]).all()  # one mix per sample, the same over its pixels
    assert mixed.flatten().std() > 0.3  # and they differ between samples


def test_wgan_gp_trains_its_critic_five_times_a_step_unless_told_otherwise():
    assert load_config(None, ["loss.kind=wgan-gp"]).train.n_critic == 5
    assert load_config(None, ["loss.kind=wgan-gp", "train.n_critic=2"]).train.n_critic == 2
    assert load_config(None, ["loss.kind=hinge"]).train.n_critic == 1
    shipped = load_config(Path(__file__).parent.parent / "configs" / "wgan-gp.toml")
    assert (shipped.train.n_critic, shipped.train.beta1, shipped.train.beta2) == (5, 0.0, 0.9)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunDir]:
    """6-step runs of four losses, trained by the worker's own code."""
    kinds = {
        "nonsat": [],
        "wgan-gp": ["loss.kind=wgan-gp", "train.n_critic=2"],
        "rpgan": ["loss.kind=rpgan", "loss.r1_gamma=0.1", "loss.r2_gamma=0.1", "loss.penalty_every=2"],
        "hinge": ["loss.kind=hinge"],
    }
    root = tmp_path_factory.mktemp("losses")
    made = {}
    for kind, overrides in kinds.items():
        made[kind] = RunDir(root / kind)
        assert train_in_process(made[kind], tiny_config("train.steps=6", *overrides)) == 0
    return made


def test_each_run_records_its_loss_for_the_viewers(runs: dict[str, RunDir]):
    assert {kind: read_status(run)["loss"] for kind, run in runs.items()} == {kind: kind for kind in runs}


def test_a_probability_d_logs_sigmoid_means_and_the_others_their_raw_scores(runs: dict[str, RunDir]):
    nonsat, critic = read_jsonl(runs["nonsat"].metrics), read_jsonl(runs["wgan-gp"].metrics)
    assert all(0 < row["d_x"] < 1 and 0 < row["d_g_z1"] < 1 for row in nonsat)
    assert "score_gap" not in nonsat[0] and "gp" not in nonsat[0]
    for row in critic:  # a critic's loss on real images is minus its mean score: the raw score it logs
        assert row["d_x"] == pytest.approx(-row["loss_d_real"]) and row["d_g_z1"] == pytest.approx(row["loss_d_fake"])
        assert row["score_gap"] == pytest.approx(row["d_x"] - row["d_g_z1"], abs=1e-6)
        assert row["gp"] > 0 and row["loss_d"] == pytest.approx(row["loss_d_real"] + row["loss_d_fake"] + row["gp"])


def test_lazy_penalties_are_logged_on_the_steps_they_are_computed(runs: dict[str, RunDir]):
    rows = read_jsonl(runs["rpgan"].metrics)
    assert [row["step"] for row in rows if "r1" in row] == [1, 3, 5]  # D steps 0, 2, 4
    assert all(("r1" in row) == ("r2" in row) for row in rows)
    assert "loss_d_real" not in rows[0]  # a paired loss has no loss on real images alone


def test_a_hinge_d_logs_the_share_of_scores_past_its_margins(runs: dict[str, RunDir]):
    rows = read_jsonl(runs["hinge"].metrics)
    assert all(0 <= row["real_above_margin"] <= 1 and 0 <= row["fake_below_margin"] <= 1 for row in rows)
    assert any(row["d_x"] < 0 for row in rows)  # a raw score, which a sigmoid mean never is
