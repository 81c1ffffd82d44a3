"""What each GAN loss family's numbers mean: how to read D's output, torch-free.

ganterm logs D's outputs as `d_x`, `d_g_z1` and `d_g_z2` whatever the loss;
the run's record (status.json's `loss`: a loss or family name) says which
family wrote them, and so how to read them. A probability family logs
sigmoid means, where 0.5 is chance; every other family logs D's raw output,
whose scale and meaning are its own. The dashboard's D panel, `ganterm runs`
and the health checks ask the family here; none of them assumes a sigmoid.
A run recorded without `loss` (every run from before families) reads as
probability, which is what it logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ganterm.errors import UserError

# The checks that read D's output as a probability; every family names those that mean something for it.
PROBABILITY_CHECKS = ("d_overpowering", "d_collapse", "vanishing_g_gradient", "mode_collapse", "divergence",
                      "oscillation")  # fmt: skip


@dataclass(frozen=True)
class SeriesInfo:
    """A statistic some families log beyond D's outputs: its panel's title and reference lines."""

    title: str
    references: tuple[float, ...] = ()


# Weighted penalties are logged as they enter D's loss, on the steps they are computed (lazily, every
# loss.penalty_every steps, for R1 and R2): a penalty's panel has points only there.
SERIES = {
    "score_gap": SeriesInfo("score gap E[D(x)] − E[D(G(z))]", (0.0,)),
    "real_above_margin": SeriesInfo("share of real scores above +1 (D saturating the real margin)"),
    "fake_below_margin": SeriesInfo("share of fake scores below −1 (D saturating the fake margin)"),
    "gp": SeriesInfo("gradient penalty λ·E[(‖∇D(x̂)‖ − 1)²], as added to D's loss"),
    "r1": SeriesInfo("R1 penalty γ/2·E[‖∇D(x)‖²] on real images, as added to D's loss"),
    "r2": SeriesInfo("R2 penalty γ/2·E[‖∇D(G(z))‖²] on fakes, as added to D's loss"),
}
PENALTIES = ("gp", "r1", "r2")


@dataclass(frozen=True)
class Family:
    """One way to read D: what its output is, how its panel shows it, which checks apply and their limits.

    `limits` are the family's own thresholds for the checks it keeps or adds (the probability family's
    come from the `[health]` config section; a `warmup` here lengthens the section's, never shortens it);
    `advice` replaces a check's advice for this family, as (for ganterm's own loop, in words for a user's
    loop).
    """

    name: str
    losses: tuple[str, ...]
    output: str  # what D's output is, in words
    d_title: str  # the D panel's title: what its y axis shows, and its lines
    references: tuple[float, ...]  # the D panel's reference lines
    headers: tuple[str, str]  # `ganterm runs`' columns of D(x) and D(G(z))
    series: tuple[str, ...]  # what ganterm's loop logs for it beyond D's outputs (penalties aside)
    checks: tuple[str, ...]  # the health checks that apply (nonfinite always does)
    limits: Mapping[str, float] = field(default_factory=dict)
    advice: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def probability(self) -> bool:
        return self.name == "probability"


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "probability",
            ("nonsat", "minimax"),
            "the probability D gives an image of being real (the sigmoid of its logit)",
            "D(x), D(G(z)) · 0.5 = equilibrium",
            (0.5,),
            ("D(x)", "D(G(z))"),
            (),
            PROBABILITY_CHECKS,
        ),
        Family(
            "least-squares",
            ("lsgan",),
            "D's raw output, pulled towards 1 on real images and 0 on fakes",
            "D(x), D(G(z)) raw outputs · targets 1 real, 0 fake",
            (0.0, 1.0),
            ("D(x) lsq", "D(G(z)) lsq"),
            (),
            PROBABILITY_CHECKS,
            # loss_d is 0.25 at equilibrium (both outputs at 0.5); 0.5 means D is far off both targets.
            # D overpowering: D(x) within about 0.1 of its real target, 1 or, with label smoothing 0.1, 0.9
            # (a median above 0.95 it would never reach), and D(G(z)) within 0.08 of 0. With D learning 100x
            # faster the default recipe's medians over steps 101-200 were 0.87 and 0.06; healthy, 0.79 and 0.18
            # (seed 0) and 0.82 and 0.12 (seed 1).
            limits={"loss_d_high": 0.5, "d_x_high": 0.8, "d_g_z_low": 0.08},
            advice={
                "d_overpowering": (
                    "Try a lower D learning rate (train.lr_d), one-sided label smoothing (loss.label_smoothing=0.1) "
                    "or fewer D steps (train.n_critic).",
                    "Try a lower learning rate for D, a real target below 1 (0.9), or fewer D updates per G update.",
                ),
                "vanishing_g_gradient": (
                    "Least squares keeps G's gradient while D's output is off its target, so D's output has "
                    "gone flat around G's samples; try a lower D learning rate (train.lr_d) or an R1 penalty "
                    "(loss.r1_gamma).",
                    "Least squares keeps G's gradient while D's output is off its target, so D's output has "
                    "gone flat around G's samples; try a lower learning rate for D or an R1 gradient penalty.",
                ),
            },
        ),
        Family(
            "margin",
            ("hinge",),
            "D's raw score, pushed above +1 on real images and below −1 on fakes",
            "D(x), D(G(z)) raw scores · margins at ±1",
            (-1.0, 1.0),
            ("D(x) score", "D(G(z)) score"),
            ("real_above_margin", "fake_below_margin"),
            ("margins_saturated", "mode_collapse", "oscillation"),
            # D saturates both margins when at least this share of real and of fake scores lie past them
            limits={"saturated_share": 0.9},
            advice={
                "margins_saturated": (
                    "Try a lower D learning rate (train.lr_d), fewer D steps (train.n_critic) or DiffAugment "
                    "(train.augment=true).",
                    "Try a lower learning rate for D, fewer D updates per G update, or augmenting what D sees.",
                ),
            },
        ),
        Family(
            "critic",
            ("wgan-gp",),
            "the critic's raw score: only differences between scores mean something",
            "critic scores D(x), D(G(z)) · only differences count",
            (0.0,),
            ("critic(x)", "critic(G(z))"),
            ("score_gap",),
            ("gap_diverging", "gap_collapsed", "penalty_dominating", "scores_drifting", "mode_collapse"),
            # growth: the quarter means of the long window rise each time and the last is this much above the
            # first (1 = doubled); floor: below this size a gap or score level is no cause for alarm
            # warmup: a critic's G spreads out slowly (one G step per five D steps): the shipped recipe's samples
            # were 21% as spread out as real ones at step 200 and 47% at step 400, healthy, 80% at step 800
            # gap_zero: a gap median below this is about 0 or below; the shipped recipe's was 4.6 and 7.7 at step 800
            limits={
                "warmup": 500,
                "gap_growth": 1.0,
                "gap_floor": 5.0,
                "gap_zero": 0.1,
                "drift_growth": 1.0,
                "drift_floor": 10.0,
                "penalty_share": 1.0,
            },
            advice={
                "gap_diverging": (
                    "The critic is running away from G: try more G updates (fewer train.n_critic), a lower D "
                    "learning rate (train.lr_d), or check that the gradient penalty is on (loss.gp_weight).",
                    "The critic is running away from G: try fewer critic updates per G update, a lower "
                    "learning rate for the critic, or check that your gradient penalty is on.",
                ),
                "gap_collapsed": (
                    "Try a higher D learning rate (train.lr_d), more critic steps (train.n_critic) or a smaller "
                    "penalty weight (loss.gp_weight), or resume from an earlier checkpoint.",
                    "Try a higher learning rate for the critic, more critic updates per G update or a smaller "
                    "penalty weight, or go back to an earlier checkpoint.",
                ),
                "penalty_dominating": (
                    "The critic spends its capacity on the penalty rather than on telling real from fake: "
                    "try a smaller penalty weight (loss.gp_weight, loss.r1_gamma, loss.r2_gamma).",
                    "The critic spends its capacity on the penalty rather than on telling real from fake: "
                    "try a smaller penalty weight.",
                ),
                "scores_drifting": (
                    "Nothing holds the critic's scores in place: check that the gradient penalty is on "
                    "(loss.gp_weight), or lower the D learning rate (train.lr_d).",
                    "Nothing holds the critic's scores in place: check that your gradient penalty is on and "
                    "computed on interpolates, or lower the critic's learning rate.",
                ),
            },
        ),
        Family(
            "relativistic",
            ("rpgan",),
            "D's raw score, read only as real minus fake (relativistic pairing)",
            "D(x), D(G(z)) raw scores · only their gap counts",
            (0.0,),
            ("D(x) score", "D(G(z)) score"),
            ("score_gap",),
            ("pairs_decided", "gap_diverging", "penalty_dominating", "mode_collapse", "oscillation"),
            # decided_loss: D's loss median below this (softplus(−gap) for a gap of 5.8 on every pair) is D deciding
            # every pair; with no R1, R2 or spectral norm and D learning 100x faster it was 0.0001 at step 400 and
            # the samples 14% as spread as real ones, where healthy runs (the recipe on two seeds, and without
            # penalties or with D 100x faster) stayed at 0.009 or above after step 400.
            # warmup: the shipped recipe's samples (width 32) were 23% as spread out as real ones at step 200,
            # 44% at 300 and 62% at 400, healthy (the non-saturating recipe's: 67% at step 200); penalty_share:
            # its R1 + R2 medians were as large as loss_d's while D led early on (steps 200-300), half at 400
            limits={"warmup": 400, "gap_growth": 1.0, "gap_floor": 5.0, "penalty_share": 3.0, "decided_loss": 0.003},
            advice={
                "pairs_decided": (
                    "Try R1 and R2 penalties (loss.r1_gamma, loss.r2_gamma), spectral norm in D "
                    "(model.spectral_norm=true) or a lower D learning rate (train.lr_d).",
                    "Try R1 and R2 gradient penalties, spectral norm in D, or a lower learning rate for D.",
                ),
                "gap_diverging": (
                    "D pulls real and fake scores ever further apart, which starves G: try R1 and R2 penalties "
                    "(loss.r1_gamma, loss.r2_gamma) or a lower D learning rate (train.lr_d).",
                    "D pulls real and fake scores ever further apart, which starves G: try R1 and R2 gradient "
                    "penalties or a lower learning rate for D.",
                ),
                "penalty_dominating": (
                    "D spends its capacity on the penalties rather than on telling real from fake: try smaller "
                    "loss.r1_gamma and loss.r2_gamma.",
                    "D spends its capacity on the penalties rather than on telling real from fake: try smaller "
                    "penalty weights.",
                ),
            },
        ),
        # Two readings for runs ganterm did not train (ganterm.sources.roles), so no loss of its loop names them.
        # A non-saturating loss logged before the sigmoid (StyleGAN's Loss/scores/*): the losses mean what the
        # probability family's do, so the checks that read only losses and spread keep; those that read D's
        # outputs as probabilities do not (the mean of logits is no logit of the mean probability).
        Family(
            "logit",
            (),
            "D's raw logit, before the sigmoid, of a non-saturating loss: 0 is chance, above 0 says real",
            "D(x), D(G(z)) raw logits · 0 = chance",
            (0.0,),
            ("D(x) logit", "D(G(z)) logit"),
            (),
            ("mode_collapse", "divergence", "oscillation"),
        ),
        # D's outputs of a loss the run did not name: shown as they are, read by no check.
        Family(
            "raw",
            (),
            "D's raw output, of a loss the run did not name",
            "D(x), D(G(z)) as logged · loss not named",
            (),
            ("D(x)", "D(G(z))"),
            (),
            ("mode_collapse",),
        ),
    )
}
DEFAULT_FAMILY = "probability"
_BY_LOSS = {loss: family for family in FAMILIES.values() for loss in family.losses}
LOSS_NAMES = tuple(_BY_LOSS)


def accepted_names() -> str:
    """Every name `family_named` takes, for a one-sentence refusal."""
    return ", ".join([*FAMILIES, *LOSS_NAMES])


def family_named(name: Any) -> Family:
    """The family of a loss name (`wgan-gp`) or a family name (`critic`); one sentence for anything else."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    if isinstance(name, str) and name in _BY_LOSS:
        return _BY_LOSS[name]
    raise UserError(f"loss must be a loss family or loss name ({accepted_names()}), not {name!r}")


def family_of(status: Mapping[str, Any] | None) -> Family:
    """How to read a run's D outputs, from its status.json: probability when it says nothing (or nothing known)."""
    name = (status or {}).get("loss")
    try:
        return family_named(name)
    except UserError:
        return FAMILIES[DEFAULT_FAMILY]
