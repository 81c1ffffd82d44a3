"""Alerts on real runs of each loss family: its shipped recipe stays silent, a broken one is named first by its
family's alert, and a user's own WGAN-GP loop is read as a critic's.

Each trains through the CLI (or runs the example), as a user would; minutes each, so slow. Every run is at
width 32, a quarter of the default width's work, and only as long as its family's checks need to have judged
it: a critic's and a relativistic D's checks wait 500 and 400 steps (their G spreads out slowly), and the
long-window checks (gap diverging, scores drifting) need 400 steps of history. docs/losses.md has the steps
each alert fired at.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from ganterm.run.jsonl import read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from tests.test_health_runs import train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def sets(*settings: str) -> list[str]:
    """`--set` before each setting, as the command line takes them."""
    return [word for setting in settings for word in ("--set", setting)]


SMALL = sets("model.width=32", "quality.every=0")
# What users train for each loss: the shipped recipes, and the default recipe with the loss changed (for hinge
# and least squares it keeps spectral norm, label smoothing 0.1 and Adam (0, 0.99), as SN-GAN's hinge did)
RECIPES = {
    "wgan-gp": [str(ROOT / "configs" / "wgan-gp.toml")],
    "rpgan": [str(ROOT / "configs" / "rpgan.toml")],
    "hinge": sets("loss.kind=hinge"),
    "lsgan": sets("loss.kind=lsgan"),
}
# Long enough for every check of the family to have judged 300 steps or more
STEPS = {"wgan-gp": 800, "rpgan": 800, "hinge": 600, "lsgan": 600}


def train_recipe(tmp_path: Path, name: str, loss: str, *changes: str) -> list[dict]:
    """The alerts a run of `loss`'s recipe raised, with `changes` (`sets`) on top."""
    return train(tmp_path, name, *RECIPES[loss], "--steps", str(STEPS[loss]), *SMALL, *changes)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("loss", list(RECIPES))
def test_each_losss_recipe_raises_no_alert(tmp_path: Path, loss: str, seed: int):
    assert train_recipe(tmp_path, f"{loss}-seed{seed}", loss, *sets(f"train.seed={seed}")) == []


# Spectral norm alone holds D, so turning one thing off was no broken run for the critic or relativistic
# recipes, and nothing fired, rightly: a WGAN-GP without its penalty went from a gap of 27 to 2.4, its samples
# 87% as spread as real ones at step 1,000; relativistic pairing without R1 and R2, or with D 100x faster, from
# 3 or 6 to 1.0, 91% and 93% as spread at step 800 (and without R1, R2 and spectral norm, 95%).
# variant: (loss, changes, the alerts that may come first, the step it must have come by). Each was named as soon
# as its family's checks began (steps 500, 200, 200 and 400); the bound leaves a window's length of slack.
BROKEN = {
    "wgan-gp without its penalty": (
        "wgan-gp",
        sets("loss.gp_weight=0", "model.spectral_norm=false"),
        ("scores_drifting", "gap_diverging"),
        600,
    ),
    "hinge with D 100x faster": ("hinge", sets("train.lr_d=2e-2"), ("margins_saturated",), 300),
    "least squares with D 100x faster": ("lsgan", sets("train.lr_d=2e-2"), ("d_overpowering",), 300),
    "rpgan without penalties or spectral norm, D 100x faster": (
        "rpgan",
        sets("loss.r1_gamma=0", "loss.r2_gamma=0", "model.spectral_norm=false", "train.lr_d=2e-2"),
        ("pairs_decided", "gap_diverging"),
        500,
    ),
}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_a_broken_recipe_is_named_first_by_its_familys_alert(tmp_path: Path, variant: str):
    loss, changes, named, by_step = BROKEN[variant]
    alerts = train_recipe(tmp_path, variant.replace(" ", "-").replace(",", ""), loss, *changes)
    assert alerts and alerts[0]["check"] in named and alerts[0]["step"] <= by_step, alerts


def test_a_users_own_wgan_gp_loop_stays_silent_while_healthy_and_records_the_critics_series(tmp_path: Path):
    """examples/wgan_gp_loop.py on the bundled digits, through ganterm.Run(loss="wgan-gp"): the critic's gap and
    penalty are logged on every step for their panels, the critic learns (its gap narrows as G catches up), and
    nothing fires."""
    example = ROOT / "examples" / "wgan_gp_loop.py"
    args = ["--steps", "800", "--root", "runs"]
    done = subprocess.run([sys.executable, str(example), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=3600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = RunDir(tmp_path / "runs" / "wgan-digits")
    assert read_status(run)["loss"] == "wgan-gp"
    assert [e for e in read_jsonl(run.events) if e["kind"] == "alert"] == []
    rows = read_jsonl(run.metrics)
    assert len(rows) == 800 and all("score_gap" in row and "gp" in row for row in rows)
    early, late = (statistics.median(row["score_gap"] for row in part) for part in (rows[:200], rows[-100:]))
    assert 0 < late < early / 2, (early, late)
