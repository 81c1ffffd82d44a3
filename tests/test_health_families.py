"""Health checks read D's numbers as the run's loss family says: the same numbers mean other things."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Container

import pytest

from ganterm.config import HealthConfig
from ganterm.errors import UserError
from ganterm.families import FAMILIES, family_named, family_of
from ganterm.health import HealthMonitor
from tests.test_health import Row, checks, stream

CONFIG_WORDS = ("loss.", "train.", "model.", "health.")


def alerts_as(family: str, rows: list[Row], own_loop: bool = False) -> list:
    monitor = HealthMonitor(HealthConfig(), family=family, own_loop=own_loop)
    return [alert for start in range(0, len(rows), 10) for alert in monitor.update(rows[start : start + 10])]


def critic(step: int, rng: random.Random, level: float = 3.0, penalty: float = 0.3) -> Row:
    """A healthy WGAN-GP critic: real scores about +3, fake about −3, loss_d = E[D(G(z))] − E[D(x)] + λ·GP."""
    d_x, d_g_z = rng.gauss(level, 0.5), rng.gauss(-level, 0.5)
    gp = abs(rng.gauss(penalty, 0.1))
    return {
        "step": step,
        "d_x": d_x,
        "d_g_z1": d_g_z,
        "score_gap": d_x - d_g_z,
        "gp": gp,
        "loss_d": d_g_z - d_x + gp,
        "loss_d_real": -d_x,
        "loss_d_fake": d_g_z,
        "loss_g": -d_g_z,
        "grad_norm_g": 12 * math.exp(rng.gauss(0, 0.3)),
        "diversity": rng.gauss(0.9, 0.05),
    }


def critic_stream(steps: int, seed: int = 0, **shape) -> list[Row]:
    rng = random.Random(seed)
    return [critic(step, rng, **{k: f(step) for k, f in shape.items()}) for step in range(1, steps + 1)]


@pytest.mark.parametrize("seed", range(3))
def test_a_healthy_critic_raises_nothing_as_a_critic_but_would_as_a_probability(seed: int):
    """The public WGAN-GP loop's numbers: silent read as a critic; read as probabilities, D 'wins' and loss_d
    'oscillates' (the false alarms a WGAN user got)."""
    rows = critic_stream(2000, seed)
    assert alerts_as("critic", rows) == []
    assert alerts_as("wgan-gp", rows) == []
    assert "d_overpowering" in checks(alerts_as("probability", rows))


def test_a_critic_whose_scores_drift_together_is_told_so():
    """The gap stays at 6 while both scores slide down: the loss cannot see it, the penalty does not hold it."""
    rows = critic_stream(2000)
    for row in rows[400:]:
        slide = 0.05 * (row["step"] - 400)
        row["d_x"], row["d_g_z1"] = row["d_x"] - slide, row["d_g_z1"] - slide
    found = alerts_as("critic", rows)
    assert checks(found) == ["scores_drifting"]
    assert "has fallen" in found[0].message and "(loss.gp_weight)" in found[0].message
    own = alerts_as("critic", rows, own_loop=True)
    assert "your gradient penalty" in own[0].message and "loss.gp_weight" not in own[0].message


def test_a_critic_running_away_from_g_is_told_its_gap_diverges():
    """As without a penalty: real scores up, fake ones down, the Wasserstein estimate climbing."""
    rows = critic_stream(2000, level=lambda step: 3.0 * math.exp(max(0, step - 400) / 300), penalty=lambda s: 0.0)
    found = alerts_as("critic", rows)
    assert checks(found) == ["gap_diverging"]
    assert "Wasserstein estimate" in found[0].message and "gradient penalty is on" in found[0].message


def test_a_critic_whose_gap_climbs_to_its_level_early_on_raises_nothing():
    """A WGAN-GP's Wasserstein estimate rises from about 0.5 to 4 over its first few hundred steps, then stays."""
    rows = critic_stream(2000, level=lambda step: 0.25 + 1.75 * min(step, 600) / 600)
    assert alerts_as("critic", rows) == []


def test_a_critics_generator_spreading_out_slowly_is_no_collapse():
    """As the shipped WGAN-GP recipe (width 32) measured: 21% of the real spread at step 200, 47% at 400."""
    rows = critic_stream(1000)
    for row in rows:
        row["diversity"] = min(0.9, 0.15 + 0.65 * row["step"] / 800)
    assert alerts_as("critic", rows) == []
    assert "mode_collapse" in checks(alerts_as("margin", rows))  # a family with the usual warmup says it


def blind_critic(diversity: float) -> list[Row]:
    """From step 600 the critic scores real and fake alike (a gap of about 0.02), as one that stopped learning.
    It logs no penalty (held by spectral norm alone): beside a gap of 0 any penalty would also dominate."""
    rng, rows = random.Random(4), critic_stream(1500)
    for row in rows:
        del row["gp"]
    for row in rows[600:]:
        gap, level = rng.gauss(0.02, 0.05), rng.gauss(0.0, 0.5)
        row |= {"d_x": level + gap / 2, "d_g_z1": level - gap / 2, "score_gap": gap, "diversity": diversity}
    return rows


def test_a_critic_whose_gap_collapses_while_samples_are_poor_is_named_before_the_collapse_it_causes():
    found = alerts_as("critic", blind_critic(diversity=0.2))
    assert checks(found) == ["gap_collapsed"] and 600 < found[0].step <= 700
    assert abs(found[0].evidence["score_gap"]) < 0.1 and found[0].evidence["diversity"] < 0.4
    assert "no longer tells real from fake" in found[0].message and "(train.lr_d)" in found[0].message
    own = alerts_as("critic", blind_critic(diversity=0.2), own_loop=True)
    assert checks(own) == ["gap_collapsed"] and "train.lr_d" not in own[0].message


def test_a_critic_that_scores_g_above_real_images_while_samples_are_poor_is_blind_too():
    """A critic that stopped learning (D's learning rate 1e-7 on the WGAN-GP recipe): G found what the frozen critic
    scores high, and the gap went from -0.3 to -2.2 over 700 steps, samples 36-45% as spread as real ones."""
    rows = blind_critic(diversity=0.3)
    for row in rows[600:]:
        row["score_gap"], row["d_g_z1"] = -1.7, row["d_x"] + 1.7
    assert checks(alerts_as("critic", rows)) == ["gap_collapsed"]


def test_a_critic_whose_gap_closes_on_good_samples_has_caught_up_and_raises_nothing():
    assert alerts_as("critic", blind_critic(diversity=0.85)) == []


def test_poor_samples_with_a_wide_gap_are_a_collapse_not_a_blind_critic():
    rows = critic_stream(1500)
    for row in rows[600:]:
        row["diversity"] = 0.2
    assert checks(alerts_as("critic", rows)) == ["mode_collapse"]


def test_a_penalty_dominating_the_critics_loss_is_named():
    rows = critic_stream(1000, level=lambda step: 3.0 if step < 300 else 0.3, penalty=lambda step: 5.0)
    found = alerts_as("critic", rows)
    assert checks(found) == ["penalty_dominating"]
    assert found[0].evidence["penalty"] > found[0].evidence["adversarial"]


def hinge(step: int, rng: random.Random, saturated: bool) -> Row:
    share = 0.97 if saturated else 0.4
    return {
        "step": step,
        "d_x": rng.gauss(1.6 if saturated else 0.6, 0.2),
        "d_g_z1": rng.gauss(-1.6 if saturated else -0.6, 0.2),
        "real_above_margin": min(1.0, rng.gauss(share, 0.02)),
        "fake_below_margin": min(1.0, rng.gauss(share, 0.02)),
        "loss_d": abs(rng.gauss(0.2 if saturated else 1.2, 0.1)),
        "loss_g": rng.gauss(1.6 if saturated else 0.6, 0.2),
        "grad_norm_g": 12 * math.exp(rng.gauss(0, 0.3)),
        "diversity": rng.gauss(0.9, 0.05),
    }


def test_a_hinge_d_saturating_both_margins_is_named_in_hinge_terms():
    rng = random.Random(0)
    rows = [hinge(step, rng, saturated=step > 500) for step in range(1, 1200)]
    found = alerts_as("hinge", rows)
    assert checks(found) == ["margins_saturated"] and 500 < found[0].step <= 600
    assert "hinge margins" in found[0].message and "label smoothing" not in found[0].message
    assert "margins_saturated" not in checks(alerts_as("critic", rows))  # the critic has no margins


def test_a_healthy_hinge_d_raises_nothing():
    rng = random.Random(1)
    assert alerts_as("margin", [hinge(step, rng, saturated=False) for step in range(1, 2000)]) == []


def test_a_relativistic_gap_growing_without_bound_is_named():
    rng = random.Random(2)
    rows = []
    for step in range(1, 2000):
        gap = 1.0 if step <= 400 else 1.0 * math.exp((step - 400) / 250)
        offset = rng.gauss(7.0, 2.0)  # a relativistic D's level means nothing: only the gap counts
        rows.append({"step": step, "d_x": offset + gap / 2, "d_g_z1": offset - gap / 2,
                     "loss_d": math.log1p(math.exp(-gap)), "loss_g": math.log1p(math.exp(gap)),
                     "diversity": 0.9})  # fmt: skip
    found = alerts_as("rpgan", rows)
    # once the gap passes about 6, D decides every pair, and says so; the gap's growth is told as it goes on
    assert checks(found) == ["pairs_decided", "gap_diverging"]
    assert "how far D sets real above fake" in found[1].message


def relativistic(step: int, rng: random.Random, gap: float, diversity: float) -> Row:
    gap, offset = rng.gauss(gap, 0.5), rng.gauss(7.0, 2.0)  # its level means nothing: only the gap counts
    loss_d, loss_g = math.log1p(math.exp(-gap)), math.log1p(math.exp(gap))
    return {"step": step, "d_x": offset + gap / 2, "d_g_z1": offset - gap / 2, "score_gap": gap,
            "loss_d": loss_d, "loss_g": loss_g, "diversity": diversity}  # fmt: skip


def test_a_relativistic_d_deciding_every_pair_is_named_before_the_collapse_it_causes():
    """As with no R1, R2 or spectral norm and D learning 100x faster: from the start D set real about 10 above
    fake on every pair (loss_d 0.0001 by step 400) and held it there, G's samples 14% as spread as real ones."""
    rng = random.Random(6)
    rows = [relativistic(step, rng, 10.0, 0.15) for step in range(1, 1200)]
    found = alerts_as("relativistic", rows)
    assert checks(found) == ["pairs_decided"] and found[0].step == 400  # the family's warmup
    assert "collapsed as a result: 15%" in found[0].message and "(loss.r1_gamma" in found[0].message
    assert "pairs_decided" not in checks(alerts_as("critic", rows))  # a critic's loss is no softplus


def test_a_relativistic_d_winning_by_a_gap_of_five_is_no_overpowering():
    """Without R1 and R2, the penalty-free run's D reached a loss_d median of 0.009 (gap 5.2) by step 800, its
    samples 94% as spread as real ones."""
    rng = random.Random(7)
    assert alerts_as("relativistic", [relativistic(step, rng, 4.7, 0.94) for step in range(1, 1200)]) == []


def test_a_healthy_relativistic_d_with_lazy_penalties_raises_nothing_though_its_gap_is_near_zero():
    """R3GAN-like: gap about 0.1, loss_d about softplus(-0.1), small R1 and R2 every 16th step; G spreads out as
    slowly as the shipped recipe's did (23% of the real spread at step 200, 62% at 400)."""
    rng = random.Random(3)
    rows = []
    for step in range(1, 2000):
        gap, offset = rng.gauss(0.1, 0.3), rng.gauss(-4.0, 1.0)
        row = {"step": step, "d_x": offset + gap / 2, "d_g_z1": offset - gap / 2, "score_gap": gap,
               "loss_d": math.log1p(math.exp(-gap)), "loss_g": math.log1p(math.exp(gap)),
               "diversity": min(0.9, 0.23 + 0.2 * max(0, step - 200) / 100)}  # fmt: skip
        if step % 16 == 1:
            row |= {"r1": abs(rng.gauss(0.2, 0.05)), "r2": abs(rng.gauss(0.2, 0.05))}
        rows.append(row)
    assert alerts_as("relativistic", rows) == []
    dominated = [row | {"r1": 2.0, "r2": 2.0} if "r1" in row else row for row in rows]
    assert checks(alerts_as("relativistic", dominated)) == ["penalty_dominating"]


def test_a_least_squares_d_that_g_has_overpowered_is_named_at_least_squares_levels():
    """D(G(z)) at 0.9 raw (near the real target) with loss_d 0.6: far off equilibrium's 0.25 for least squares,
    but below the 1.5 a probability D's BCE would need."""

    def weak_d(step: int, row: Row) -> Row:
        return {**row, "d_g_z1": 0.9, "d_x": 0.7, "loss_d": 0.6} if step > 500 else row

    rows = stream(1000, weak_d)
    assert checks(alerts_as("least-squares", rows)) == ["d_collapse"]
    assert checks(alerts_as("probability", rows)) == []


def test_a_least_squares_d_sitting_on_its_targets_is_told_without_nonsat_advice():
    def winning(step: int, row: Row) -> Row:
        return {**row, "d_x": 1.02, "d_g_z1": -0.01, "loss_d": 0.01} if step > 300 else row

    (alert,) = alerts_as("lsgan", stream(800, winning))
    assert alert.check == "d_overpowering" and "at its targets" in alert.message
    assert "non-saturating" not in alert.message


def least_squares_d(step: int, rng: random.Random, d_x: float, d_g_z: float) -> Row:
    return {"step": step, "d_x": rng.gauss(d_x, 0.03), "d_g_z1": rng.gauss(d_g_z, 0.03),
            "loss_d": 0.5 * ((0.9 - d_x) ** 2 + d_g_z**2), "loss_g": 0.5 * (d_g_z - 1) ** 2,
            "grad_norm_g": 1.0, "diversity": 0.9}  # fmt: skip


def test_a_least_squares_d_on_its_smoothed_targets_is_overpowering_and_a_healthy_early_one_is_not():
    """The default recipe with loss.kind=lsgan, whose label smoothing makes D's real target 0.9: with D learning
    100x faster its medians over steps 101-200 were D(x) 0.87 and D(G(z)) 0.06, on both targets (a D(x) above
    0.95 it can never reach); the healthy recipe's were 0.79 and 0.18 on seed 0, 0.82 and 0.12 on seed 1."""
    rng = random.Random(5)
    winning = [least_squares_d(step, rng, 0.87, 0.06) for step in range(1, 600)]
    (alert,) = alerts_as("least-squares", winning)
    assert alert.check == "d_overpowering" and alert.step == 200 and "at its targets" in alert.message
    for d_x, d_g_z in ((0.79, 0.18), (0.82, 0.12)):
        assert alerts_as("least-squares", [least_squares_d(step, rng, d_x, d_g_z) for step in range(1, 600)]) == []


@pytest.mark.parametrize("name", list(FAMILIES))
def test_advice_for_a_users_loop_names_no_ganterm_setting(name: str):
    for check, (_, own) in FAMILIES[name].advice.items():
        assert not any(word in own for word in CONFIG_WORDS), (name, check, own)


def test_a_run_that_says_no_family_reads_as_probability_and_a_wrong_name_is_one_sentence():
    assert family_of({}).name == "probability" and family_of({"loss": "something-new"}).name == "probability"
    assert family_of({"loss": "wgan-gp"}).name == "critic" and family_of({"loss": "margin"}).name == "margin"
    with pytest.raises(UserError, match=r"^loss must be .*critic.*wgan-gp.*, not 'wgan'$"):
        family_named("wgan")


def test_every_loss_the_worker_trains_has_a_family_and_every_family_names_real_checks_and_series():
    """A loss added without its family, or a check or series name mistyped in one, would be silently misread."""
    from ganterm.config import LOSS_KINDS
    from ganterm.families import LOSS_NAMES, SERIES

    assert set(LOSS_KINDS) == set(LOSS_NAMES)
    monitor = HealthMonitor(HealthConfig())
    known = {check.__name__.lstrip("_") for check in monitor._checks()}
    for family in FAMILIES.values():
        assert set(family.checks) <= known, family.name
        assert set(family.series) <= set(SERIES), family.name
        assert set(family.advice) <= set(family.checks), family.name


def stylegan_row(step: int, rng: random.Random, loss_g: float = 1.0) -> Row:
    """StyleGAN's non-saturating loss logged before the sigmoid: mean logits, real about +4, fake about −4."""
    real, fake = rng.gauss(4.0, 0.5), rng.gauss(-4.0, 0.5)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    return {"step": step, "d_x": real, "d_g_z1": fake, "loss_d": softplus(fake) + softplus(-real),
            "loss_g": rng.gauss(loss_g, 0.05)}  # fmt: skip


def test_logits_are_not_read_as_probabilities_and_the_losses_still_are_watched():
    """Logits of ±4 are sigmoid 0.98 and 0.02 on average, but a mean logit is no mean probability: the
    probability checks stay off; G's loss climbing stretch after stretch is told as it is for any nonsat loss."""
    rng = random.Random(0)
    steady = [stylegan_row(step, rng) for step in range(1, 1001)]
    assert alerts_as("logit", steady) == []
    assert "d_overpowering" in checks(alerts_as("probability", steady))
    climbing = [stylegan_row(step, rng, loss_g=1.0 + step / 100) for step in range(1, 1001)]
    assert checks(alerts_as("logit", climbing)) == ["divergence"]


def test_a_raw_run_reads_no_d_output_at_all():
    """A loss nobody named: scores that would alarm as probabilities, or as a critic's, raise nothing."""
    rows = critic_stream(2000, level=lambda step: 3.0 + step / 50)
    assert alerts_as("critic", rows) and alerts_as("probability", rows)
    assert alerts_as("raw", rows) == []


# The family checks read whole: a viewer that opens a run feeds its rows at once, so every window is the one
# that ends at the last row, and each alert's numbers can be worked by hand.


def read_at_once(family: str, rows: list[Row], own_loop: bool = False, **config: float) -> list:
    return HealthMonitor(HealthConfig(**config), family=family, own_loop=own_loop).update(rows)


def advice(family: str, check: str, own_loop: bool = False) -> str:
    return FAMILIES[family].advice[check][own_loop]


def margin_shares(real: float, fake: float, steps: int = 300) -> list[Row]:
    """A hinge D logging the share of real scores past +1 and of fake ones past −1, as ganterm's loop does."""
    return [{"step": step, "d_x": 1.5, "d_g_z1": -1.5, "real_above_margin": real, "fake_below_margin": fake,
             "diversity": 0.9} for step in range(1, steps + 1)]  # fmt: skip


def test_margins_saturated_tells_both_shares_and_hinge_advice():
    (alert,) = read_at_once("margin", margin_shares(0.9, 0.95))
    assert (alert.check, alert.severity, alert.step) == ("margins_saturated", "warning", 300)
    assert alert.message == (
        "The discriminator is saturating both hinge margins: over the last 100 steps 90% of real scores were above "
        "+1 and 95% of fake ones below −1 (medians). D tells real from fake with room to spare, so G learns little. "
        + advice("margin", "margins_saturated")
    )
    assert alert.evidence == {"real_above_margin": 0.9, "fake_below_margin": 0.95}


@pytest.mark.parametrize(
    ("real", "fake", "fires"),
    [(0.9, 0.9, True), (0.89, 0.97, False), (0.97, 0.89, False), (0.97, 0.5, False), (0.5, 0.97, False)],
)
def test_margins_saturated_needs_both_shares_at_90_percent_or_more(real: float, fake: float, fires: bool):
    """90% is saturated; a D past only one margin is not (its mean scores are past both here, and do not count)."""
    assert checks(read_at_once("margin", margin_shares(real, fake))) == (["margins_saturated"] if fires else [])


def mean_scores(d_x: float, d_g_z: float) -> list[Row]:
    """A user's hinge loop that logs D's mean scores only, no shares."""
    return [{"step": step, "d_x": d_x, "d_g_z1": d_g_z, "diversity": 0.9} for step in range(1, 301)]


def test_a_hinge_loop_logging_mean_scores_only_is_judged_by_their_medians():
    (alert,) = read_at_once("margin", mean_scores(1.5, -1.5), own_loop=True)
    assert (alert.check, alert.severity, alert.step) == ("margins_saturated", "warning", 300)
    assert alert.message == (
        "The discriminator is saturating both hinge margins: over the last 100 steps D(x) had a median of 1.5 and "
        "D(G(z)) -1.5, both past their margins. D tells real from fake with room to spare, so G learns little. "
        + advice("margin", "margins_saturated", own_loop=True)
    )
    assert alert.evidence == {"d_x": 1.5, "d_g_z1": -1.5}


@pytest.mark.parametrize(("d_x", "d_g_z"), [(1.0, -1.5), (1.5, -1.0), (1.5, 0.0), (0.0, -1.5), (1.5, 0.5)])
def test_mean_scores_on_or_inside_a_margin_are_not_saturated(d_x: float, d_g_z: float):
    assert read_at_once("margin", mean_scores(d_x, d_g_z), own_loop=True) == []


@pytest.mark.parametrize("dropped", ["real_above_margin", "fake_below_margin"])
def test_a_hinge_loop_logging_one_share_only_is_judged_by_its_mean_scores(dropped: str):
    rows = [{name: value for name, value in row.items() if name != dropped} for row in margin_shares(0.97, 0.97)]
    (alert,) = read_at_once("margin", rows)
    assert "D(x) had a median of 1.5 and D(G(z)) -1.5" in alert.message


@pytest.mark.parametrize("dropped", ["d_x", "d_g_z1"])
def test_a_hinge_loop_logging_one_mean_score_only_is_not_judged(dropped: str):
    rows = [{name: value for name, value in row.items() if name != dropped} for row in mean_scores(1.5, -1.5)]
    assert read_at_once("margin", rows, own_loop=True) == []


def relativistic_loss(loss_d: float) -> list[Row]:
    return [{"step": step, "loss_d": loss_d, "diversity": 0.9} for step in range(1, 501)]


def test_pairs_decided_fires_below_its_limit_and_not_on_it():
    """The limit, 0.003, is softplus(−gap) for a gap of 5.8 on every pair; a median exactly on it is not below."""
    assert read_at_once("relativistic", relativistic_loss(0.003)) == []
    (alert,) = read_at_once("relativistic", relativistic_loss(0.0029))
    assert (alert.check, alert.severity, alert.step) == ("pairs_decided", "warning", 500)
    assert "its loss had a median of 0.0029, so it sets nearly every real image" in alert.message
    assert alert.evidence == {"loss_d": 0.0029}


def stepped(levels: tuple[float, ...]) -> list[float]:
    """900 steps' values: the first level up to step 600, then each next one for 100 steps, so that the long window
    (the last 400 steps) has the four levels as its quarters' means."""
    return [levels[max(0, (step - 501) // 100)] for step in range(1, 901)]


@pytest.mark.parametrize(
    ("family", "what"), [("critic", "the Wasserstein estimate"), ("relativistic", "how far D sets real above fake")]
)
def test_gap_diverging_tells_the_quarters_means_of_its_long_window(family: str, what: str):
    """Quarter means 6, 8, 10, 13: each above the last, and 13 − 6 is more than the first (the floor is 5)."""
    rows = [{"step": step, "d_x": gap / 2, "d_g_z1": -gap / 2, "diversity": 0.9}
            for step, gap in enumerate(stepped((6, 8, 10, 13)), start=1)]  # fmt: skip
    (alert,) = read_at_once(family, rows)
    assert (alert.check, alert.severity, alert.step) == ("gap_diverging", "warning", 900)
    assert alert.message == (
        f"The score gap E[D(x)] − E[D(G(z))] ({what}) is growing without bound: it rose in each of the last four "
        f"stretches of 100 steps, from 6 to 13. " + advice(family, "gap_diverging")
    )
    assert alert.evidence == {"score_gap_start": 6.0, "score_gap_end": 13.0}


def critic_gap(gap: float, diversity: float, steps: int = 600, diversity_from: int = 1) -> list[Row]:
    """A critic (no penalty logged) whose score gap and samples' spread hold still."""
    rows: list[Row] = [
        {"step": step, "d_x": 2.0, "d_g_z1": 2.0 - gap, "score_gap": gap} for step in range(1, steps + 1)
    ]
    for row in rows[diversity_from - 1 :]:
        row["diversity"] = diversity
    return rows


def test_gap_collapsed_says_the_gap_and_the_spread():
    (alert,) = read_at_once("critic", critic_gap(0.05, 0.25))
    assert (alert.check, alert.severity, alert.step) == ("gap_collapsed", "warning", 600)
    assert "(a median of 0.05 over the last 100 steps) while G's samples are poor: only 25% as spread" in alert.message
    assert alert.evidence == {"score_gap": 0.05, "diversity": 0.25}


@pytest.mark.parametrize(
    ("gap", "diversity", "found"),
    [(0.0999, 0.2, ["gap_collapsed"]), (0.1, 0.2, ["mode_collapse"]), (-2.0, 0.49, ["gap_collapsed"]),
     (-2.0, 0.5, [])],
)  # fmt: skip
def test_gap_collapsed_needs_a_gap_below_0_1_and_a_spread_below_diversity_low(gap, diversity, found):
    """At a gap of 0.1 the critic still tells real from fake (poor samples are then a collapse of their own);
    samples exactly as spread as `health.diversity_low` (0.5 here: 0.4 has no exact mean) are not poor."""
    assert checks(read_at_once("critic", critic_gap(gap, diversity), diversity_low=0.5)) == found


def test_gap_collapsed_waits_for_a_full_window_of_spread_and_needs_a_gap():
    """Spread logged for 50 steps only is no window of it yet; a loop that logs no D output has no gap to judge."""
    assert read_at_once("critic", critic_gap(0.0, 0.2, diversity_from=551)) == []
    rows = [{"step": step, "loss_d": -1.0, "diversity": 0.2} for step in range(1, 601)]
    assert checks(read_at_once("critic", rows)) == ["mode_collapse"]


@pytest.mark.parametrize(("sign", "way"), [(1, "risen"), (-1, "fallen")])
def test_scores_drifting_tells_the_way_and_the_quarters_means_of_the_middle(sign: int, way: str):
    """The middle's quarter means 11, 14, 18, 25 (or their negatives): 25 − 11 is more than 11 (the floor is 10);
    the gap stays at 6."""
    rows = [{"step": step, "d_x": sign * centre + 3, "d_g_z1": sign * centre - 3, "diversity": 0.9}
            for step, centre in enumerate(stepped((11, 14, 18, 25)), start=1)]  # fmt: skip
    (alert,) = read_at_once("critic", rows)
    assert (alert.check, alert.severity, alert.step) == ("scores_drifting", "warning", 900)
    assert alert.message == (
        f"The critic's scores are drifting without bound: their middle (D(x) + D(G(z))) / 2 has {way} in each of "
        f"the last four stretches of 100 steps, from {sign * 11} to {sign * 25}. " + advice("critic", "scores_drifting")
    )
    assert alert.evidence == {"score_centre_start": sign * 11.0, "score_centre_end": sign * 25.0}


def penalised(
    steps: int = 500, loss_d: float | None = None, gap: float | None = None, **penalties: tuple[float, Container[int]]
) -> list[Row]:
    """A run's rows with each penalty logged at its value on the steps given (lazily, as ganterm's loop does)."""
    rows: list[Row] = []
    for step in range(1, steps + 1):
        row: Row = {"step": step, "diversity": 0.9}
        if loss_d is not None:
            row["loss_d"] = loss_d
        if gap is not None:
            row |= {"d_x": gap / 2, "d_g_z1": -gap / 2}
        row |= {name: value for name, (value, on) in penalties.items() if step in on}
        rows.append(row)
    return rows


def test_penalty_dominating_names_every_penalty_it_added_up():
    """R1 and R2 every 16th step, 0.2 each, against a relativistic loss_d of 0.1: 0.4 is more than 3 × 0.1."""
    lazy = range(1, 501, 16)
    (alert,) = read_at_once("relativistic", penalised(loss_d=0.1, r1=(0.2, lazy), r2=(0.2, lazy)))
    assert (alert.check, alert.severity, alert.step) == ("penalty_dominating", "warning", 500)
    assert alert.message == (
        "The gradient penalty dominates D's loss: over the last 100 steps r1 + r2 had a median of 0.4, against 0.1 "
        "for the adversarial part. " + advice("relativistic", "penalty_dominating")
    )
    assert alert.evidence == {"penalty": 0.4, "adversarial": 0.1}


@pytest.mark.parametrize(("gp", "found"), [(2.0, []), (2.01, ["penalty_dominating"])])
def test_a_critics_penalty_dominates_only_above_its_gap(gp: float, found: list[str]):
    rows = penalised(steps=600, loss_d=-2.0 + gp, gap=2.0, gp=(gp, range(1, 601)))
    assert checks(read_at_once("critic", rows)) == found


@pytest.mark.parametrize(
    ("logged_at", "found"),
    [((420, 450, 480), ["penalty_dominating"]), ((450, 480), []), ((401, 450, 480), ["penalty_dominating"]),
     ((400, 450, 480), [])],
)  # fmt: skip
def test_a_lazy_penalty_counts_from_its_third_value_in_the_window(logged_at: tuple[int, ...], found: list[str]):
    """At step 500 loss_d's window is steps 401 to 500: a value logged at step 400 is outside it."""
    rows = penalised(loss_d=0.1, r1=(2.0, logged_at))
    assert checks(read_at_once("relativistic", rows)) == found


@pytest.mark.parametrize(("family", "logged"), [("relativistic", {"gap": 6.0}), ("critic", {"loss_d": 1.0})])
def test_penalties_with_nothing_to_weigh_them_against_raise_nothing(family: str, logged: dict[str, float]):
    """A relativistic loop that logs no loss_d, a critic's that logs no D output (so no gap): not judged."""
    every = range(1, 601)
    assert read_at_once(family, penalised(steps=600, r1=(5.0, every), gp=(5.0, every), **logged)) == []


def lazy_r1(value_at: Callable[[int], float]) -> list[Row]:
    """A relativistic D whose R1 is computed every 16th step, against a loss_d of 0.1 (the limit is 3 × 0.1)."""
    rows = penalised(steps=1000, loss_d=0.1)
    for row in rows:
        if row["step"] % 16 == 1:
            row["r1"] = value_at(row["step"])
    return rows


def test_a_lazy_penalty_is_judged_on_the_values_it_logged_in_the_window():
    """Its last 100 values span 1,600 steps: R1 that dominated until step 250 and was small after it is no alert
    at step 400, and R1 that starts dominating at step 601 is told within that window, not 800 steps later."""
    assert alerts_as("relativistic", lazy_r1(lambda step: 1.0 if step <= 250 else 0.01)) == []
    (alert,) = alerts_as("relativistic", lazy_r1(lambda step: 0.01 if step <= 600 else 1.0))
    assert alert.check == "penalty_dominating" and 600 < alert.step <= 700
    assert "r1 had a median of 0.505," in alert.message
