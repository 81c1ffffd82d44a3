"""Alerts on real training runs: a broken recipe is called out early, the default one never.

Both train mnist5k through the CLI, as a user would; minutes each, so slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

QUIET = ["--no-dashboard", "--set", "sample.every=0", "--set", "checkpoint.every=0"]


def train(cwd: Path, name: str, *args: str) -> list[dict]:
    """The alerts the run raised."""
    result = run_cli(cwd, "train", "--name", name, *QUIET, *args, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    return [e for e in read_jsonl(RunDir(cwd / "runs" / name).events) if e["kind"] == "alert"]


def test_a_discriminator_learning_100x_faster_is_called_out_early(tmp_path: Path):
    # plain DCGAN (no spectral norm or smoothing, Adam betas 0.5 / 0.999) with D's learning rate 100x G's
    alerts = train(tmp_path, "broken", "--steps", "400", "--set", "quality.every=0",
                   "--set", "model.spectral_norm=false", "--set", "loss.label_smoothing=0",
                   "--set", "train.beta1=0.5", "--set", "train.beta2=0.999",
                   "--set", "train.lr_g=2e-4", "--set", "train.lr_d=2e-2")  # fmt: skip
    found = {a["check"] for a in alerts}
    assert found & {"d_overpowering", "vanishing_g_gradient"}, alerts


def test_the_default_recipe_raises_no_alert(tmp_path: Path):
    assert train(tmp_path, "healthy") == []
