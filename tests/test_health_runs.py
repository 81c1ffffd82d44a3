"""Alerts on real training runs: a broken recipe is called by its name, the shipped ones stay silent.

Each trains through the CLI, as a user would; seconds to minutes each, so slow.
The broken runs start from the seeds' plain DCGAN recipe (no spectral norm, no
label smoothing, Adam betas 0.5 / 0.999) and break one thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

QUIET = ["--no-dashboard", "--set", "sample.every=0", "--set", "checkpoint.every=0"]
CLASSIC = ["--set", "quality.every=0", "--set", "model.spectral_norm=false", "--set", "loss.label_smoothing=0",
           "--set", "train.beta1=0.5", "--set", "train.beta2=0.999", "--set", "train.lr_g=2e-4"]  # fmt: skip


def train(cwd: Path, name: str, *args: str) -> list[dict]:
    """The alerts the run raised, in order."""
    result = run_cli(cwd, "train", "--name", name, *QUIET, *args, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    return [e for e in read_jsonl(RunDir(cwd / "runs" / name).events) if e["kind"] == "alert"]


def test_a_discriminator_learning_100x_faster_is_named_first(tmp_path: Path):
    alerts = train(tmp_path, "d100", "--steps", "400", *CLASSIC, "--set", "train.lr_d=2e-2")
    assert alerts and alerts[0]["check"] in ("d_overpowering", "vanishing_g_gradient"), alerts
    assert alerts[0]["step"] <= 250


def test_a_discriminator_learning_10x_faster_is_named(tmp_path: Path):
    alerts = train(tmp_path, "d10", "--steps", "600", *CLASSIC, "--set", "train.lr_d=2e-3")
    assert "d_overpowering" in [a["check"] for a in alerts], alerts


def test_a_generator_too_small_for_the_data_collapses_and_is_told(tmp_path: Path):
    alerts = train(tmp_path, "small", "--steps", "600", *CLASSIC, "--set", "train.lr_d=2e-4", "--set", "model.width=4")
    assert alerts and alerts[0]["check"] == "mode_collapse", alerts


def test_a_generator_learning_100x_faster_is_no_failure_and_raises_nothing(tmp_path: Path):
    """Measured over 3,500 steps: D(x) median 0.49 → 0.67, D(G(z)) 0.51 → 0.32, fd_classifier 86 → 44.7 with
    10 of 10 classes (the default recipe ends at 40-47; both read by the earlier, 8-epoch classifier): a fast G
    does not break this recipe, so nothing may fire."""
    assert train(tmp_path, "g100", "--steps", "1200", *CLASSIC, "--set", "train.lr_g=2e-2",
                 "--set", "train.lr_d=2e-4") == []  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_recipe_raises_no_alert(tmp_path: Path, seed: int):
    assert train(tmp_path, "healthy", "--set", f"train.seed={seed}") == []


@pytest.mark.parametrize(("recipe", "seed"), [("ring", 0), ("ring", 1), ("grid", 0)])
def test_the_toy_recipes_raise_no_alert(tmp_path: Path, recipe: str, seed: int):
    """The ring's G has found none of its modes at step 1,000 (0.6% of samples near one): not a collapse."""
    config = Path(__file__).resolve().parent.parent / "configs" / f"{recipe}.toml"
    assert train(tmp_path, recipe, str(config), "--set", f"train.seed={seed}") == []
