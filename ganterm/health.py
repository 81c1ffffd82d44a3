"""Alerts that say, in plain words, what is going wrong with a GAN while there is time.

`HealthMonitor.update` takes metric rows as the loop flushes them and returns
new alerts. Each check looks at a sliding window of the stream and fires
once when its condition starts to hold; it can fire again only after the
condition has cleared and `health.cooldown` steps have passed, so a long bad
stretch is one alert, not hundreds. Thresholds live in the `[health]` config
section. torch-free: any viewer can run the same checks.

The checks read D's outputs as the run's loss family says (`ganterm.families`):
each family names the checks that mean something for it, the thresholds that
differ from the `[health]` section's (which are a probability D's), and its own
advice; a check it does not name never runs.

The numbers behind the defaults: on the default mnist5k run, 100-step window
means stay within D(x) 0.47-0.59, D(G(z)) 0.40-0.44, loss_d 1.13-1.33 and
diversity 0.75-1.00, and grad_norm_g's windowed median never falls below 0.29
of its peak. (With DCGAN's Adam betas, 0.5 / 0.999, D(x) ran 0.71-0.91 and
D(G(z)) 0.09-0.29: still far from the 0.95 / 0.05 of an overpowering D.)
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ganterm.config import HealthConfig
from ganterm.families import DEFAULT_FAMILY, PENALTIES, Family, family_named

WARNING, ERROR = "warning", "error"
# D is overpowering when it is near-certain of real and fake on at least this share of a window's steps
DECISIVE_SHARE = 0.5
# A toy's samples pile onto few modes in a collapse: at least this share of them sits near some mode
# (high quality). Below it, G has not found the modes yet, which early in a run is no alert.
TOY_ON_MODES_SHARE = 0.25
# Stacked MNIST has no high-quality share: a G that has not learned digits yet makes shapes the
# classifier reads with less confidence, and its triple histogram says nothing about collapse. The
# default recipe on Stacked MNIST (quality every 250 steps) read 0.61 and 0.72 at steps 250 and 500 with
# 413 and 459 triples, then 952 at step 750: not a collapse, yet over 0.5. The Stacked MNIST recipe's
# points read 0.85-0.89 from step 4,000 on (seeds 103-105); a G piled onto a few triples renders them
# well, so it reads high too.
READABLE_CONFIDENCE = 0.8
# G's gradient vanishes because D rejects its samples: D(G(z))'s median below this. At D's chance level a
# small gradient is an equilibrium: the healthy grid recipe at step 1,000 had D(x) 0.505, D(G(z)) 0.498 and
# grad_norm_g at 4% of its first window's.
REJECTING_D_G_Z = 0.2
# Checks that name a cause of G's collapse: while one holds and its alert has told of the collapse, the
# mode-collapse alert does not repeat it.
COLLAPSE_CAUSES = ("d_overpowering", "pairs_decided", "gap_collapsed")

# What to try, for each check: in ganterm's own settings, and in words for a user's own loop
# (fed through ganterm.Run), which has no such settings.
ADVICE = {
    "nonfinite": (
        "If it keeps happening, lower the learning rates; the run stops after train.max_bad_steps such steps in a row.",
        "If it keeps happening, lower the learning rates, and skip or stop on non-finite losses in your loop.",
    ),
    "d_overpowering": (
        "Try the non-saturating loss (loss.kind=nonsat), a lower D learning rate (train.lr_d), one-sided "
        "label smoothing (loss.label_smoothing=0.1) or fewer D steps (train.n_critic).",
        "Try the non-saturating G loss (maximise log D(G(z))), a lower learning rate for D, one-sided label "
        "smoothing (real targets 0.9) or fewer D updates per G update.",
    ),
    "d_collapse": (
        "Try a higher D learning rate (train.lr_d), more D steps (train.n_critic), or resume from an "
        "earlier checkpoint.",
        "Try a higher learning rate for D, more D updates per G update, or go back to an earlier checkpoint.",
    ),
    "vanishing_g_gradient": (
        "With the minimax loss this is what a winning D does; switch to loss.kind=nonsat, or weaken D.",
        "With the minimax (saturating) G loss this is what a winning D does; switch to the non-saturating "
        "loss, or weaken D.",
    ),
    "mode_collapse": (
        "Try minibatch-std in D (model.minibatch_std=true), a lower learning rate, or resume from a "
        "checkpoint from before the collapse.",
        "Try a minibatch-std layer in D, a lower learning rate, or go back to a checkpoint from before the collapse.",
    ),
    "divergence": (
        "Lower both learning rates, or resume from an earlier checkpoint.",
        "Lower both learning rates, or go back to an earlier checkpoint.",
    ),
    "oscillation": (
        "The two networks are chasing each other; lower both learning rates (train.lr_g, train.lr_d).",
        "The two networks are chasing each other; lower both learning rates.",
    ),
}


@dataclass
class Alert:
    check: str
    severity: str
    step: int
    message: str
    evidence: dict[str, float] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        """The alert as the fields of an `events.jsonl` record."""
        return {"check": self.check, "severity": self.severity, "message": self.message, "evidence": self.evidence}


def _mean(values: deque[float] | list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _smooth(values: list[float], span: int) -> list[float]:
    """Trailing moving average: the loss curve without its step-to-step noise."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= span:
            total -= values[i - span]
        out.append(total / min(i + 1, span))
    return out


class HealthMonitor:
    """`classes`: how many classes the real data has (0 when unlabelled), for the coverage check.

    `own_loop`: the rows come from a user's loop through ganterm.Run, so the advice names no
    ganterm setting. `family`: the loss family (or loss name) whose numbers the rows hold.
    """

    def __init__(
        self,
        config: HealthConfig,
        classes: int = 0,
        own_loop: bool = False,
        toy: bool = False,
        family: Family | str = DEFAULT_FAMILY,
    ) -> None:
        self.config = config
        self.family = family if isinstance(family, Family) else family_named(family)
        self.classes = classes
        self.own_loop = own_loop
        # a 2-D toy's or Stacked MNIST's collapse is judged by its modes (the quality rows), not by the spread
        # of its samples, which is low early in every such run, healthy ones included, while G has not
        # spread out yet (25% of the real spread at step 200 of a healthy Stacked MNIST run)
        self.toy = toy
        window = config.window
        self.recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.long: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=4 * window))
        # the step of each value in `recent` of D's loss and the penalties, which the penalty check lines up: a
        # series logged on some steps only (a lazy penalty) reaches further back
        self.logged_at: dict[str, deque[int]] = {name: deque(maxlen=window) for name in ("loss_d", *PENALTIES)}
        self.grad_medians: list[float] = []
        self.step = 0
        self._since_window = 0
        self._nonfinite_streak = 0
        self._holding: dict[str, bool] = {}
        # the checks whose alert, in the stretch it holds, told of G's collapse as its consequence (COLLAPSE_CAUSES)
        self._collapse_said: set[str] = set()
        self._last_fired: dict[str, int] = {}

    def update(self, rows: list[dict[str, Any]]) -> list[Alert]:
        if not self.config.enabled:
            return []
        alerts: list[Alert] = []
        for row in rows:
            self.step = int(row.get("step", self.step))
            alerts += self._ingest(row)
        checks = [check for check in self._checks() if check.__name__.lstrip("_") in self.family.checks]
        # a fresh G makes near-identical blobs: nothing to judge yet
        if self.step < max(self.config.warmup, self.family.limits.get("warmup", 0)):
            return alerts
        for check in checks:
            alert = check()
            name = check.__name__.lstrip("_")
            if alert is None:
                self._holding[name] = False
            elif self._may_fire(name):
                alerts.append(alert)
            if name in COLLAPSE_CAUSES and (alert is None or alerts[-1:] == [alert]):
                told = alert is not None and "diversity" in alert.evidence
                self._collapse_said = self._collapse_said - {name} | ({name} if told else set())
        return alerts

    def _checks(self) -> tuple[Callable[[], Alert | None], ...]:
        """Every check, in the order their alerts are told: a cause before what it leads to."""
        return (
            self._d_overpowering,
            self._margins_saturated,
            self._pairs_decided,
            self._d_collapse,
            self._vanishing_g_gradient,
            self._scores_drifting,
            self._gap_diverging,
            self._gap_collapsed,
            self._penalty_dominating,
            self._mode_collapse,
            self._divergence,
            self._oscillation,
        )

    def _advice(self, check: str) -> str:
        return self.family.advice.get(check, ADVICE.get(check, ("", "")))[self.own_loop]

    def _limit(self, name: str) -> float:
        """The family's own threshold where it has one, else the [health] section's."""
        return self.family.limits.get(name, getattr(self.config, name, math.nan))

    def _may_fire(self, name: str) -> bool:
        was_holding = self._holding.get(name, False)
        self._holding[name] = True
        last = self._last_fired.get(name)
        if was_holding or (last is not None and self.step - last < self.config.cooldown):
            return False
        self._last_fired[name] = self.step
        return True

    def _ingest(self, row: dict[str, Any]) -> list[Alert]:
        if row.get("nonfinite"):
            self._nonfinite_streak += 1
            if self._nonfinite_streak == 1:
                return [
                    Alert(
                        "nonfinite",
                        ERROR,
                        self.step,
                        f"Step {self.step} produced a NaN or infinite loss or gradient, so its update was "
                        f"skipped and the weights are unharmed. {self._advice('nonfinite')}",
                    )
                ]
            return []
        self._nonfinite_streak = 0
        numbers = {
            name: float(value)
            for name, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        if "d_x" in numbers and "d_g_z1" in numbers:  # a user's loop logs D's outputs, rarely the gap or level
            numbers.setdefault("score_gap", numbers["d_x"] - numbers["d_g_z1"])
            numbers["score_centre"] = (numbers["d_x"] + numbers["d_g_z1"]) / 2
        for name, value in numbers.items():
            self.recent[name].append(value)
            self.long[name].append(value)
        for name in self.logged_at.keys() & numbers.keys():
            self.logged_at[name].append(self.step)
        if "grad_norm_g" in row:
            self._since_window += 1
            if self._since_window >= self.config.window:
                self._since_window = 0
                self.grad_medians.append(_median(list(self.recent["grad_norm_g"])))
        return []

    def _full(self, *names: str) -> bool:
        return all(len(self.recent[name]) >= self.config.window for name in names)

    def _latest(self, name: str) -> float | None:
        return self.recent[name][-1] if self.recent[name] else None

    def _d_overpowering(self) -> Alert | None:
        """Medians and the share of decisive steps, not means: a D that wins is spiky.

        A plain DCGAN whose D learns 100x faster has D(x) ~0.97 and D(G(z)) ~0.03
        on most steps, yet the odd step where G lands a hit (D(x) 0.3, loss_d 8)
        pulls a window's means far off, so mean-based thresholds never held. Its
        loss_d median, 0.14 at step 200, says less than D's outputs do (label
        smoothing alone keeps loss_d above 0.3), so it is no condition of the medians' rule.
        """
        if not self._full("d_x", "d_g_z1", "loss_d"):
            return None
        c = self.config
        d_x, d_g_z, loss_d = (_median(list(self.recent[name])) for name in ("d_x", "d_g_z1", "loss_d"))
        pairs = list(zip(self.recent["d_x"], self.recent["d_g_z1"], strict=False))
        d_x_high, d_g_z_low = self._limit("d_x_high"), self._limit("d_g_z_low")
        decisive = sum(x > d_x_high and z < d_g_z_low for x, z in pairs) / len(pairs)
        # loss_d's scale depends on the loss (least squares sits near 0.25 at equilibrium), so it only stands in
        # for D(x) when D(G(z)) says D rejects the fakes too
        by_medians = d_g_z < d_g_z_low and (d_x > d_x_high or loss_d < c.loss_d_low)
        if not (by_medians or decisive >= DECISIVE_SHARE):
            return None
        evidence = {"d_x": d_x, "d_g_z1": d_g_z, "loss_d": loss_d, "decisive_share": decisive}
        consequence = self._collapse_it_caused(evidence)
        certain = "near-certain of both" if self.family.probability else "at its targets for both"
        return Alert(
            "d_overpowering",
            WARNING,
            self.step,
            f"The discriminator is overpowering the generator: over the last {c.window} steps D(x) had a "
            f"median of {d_x:.3f} and D(G(z)) {d_g_z:.3f}, with loss_d at {loss_d:.3f}, and D was {certain} "
            f"on {decisive:.0%} of the steps. D tells real from fake almost perfectly, so G's gradient "
            f"vanishes and it stops learning.{consequence} {self._advice('d_overpowering')}",
            evidence,
        )

    def _collapse_it_caused(self, evidence: dict[str, float]) -> str:
        """A winning D's alert names the cause and, when G's samples have collapsed, says so (adding their spread
        to `evidence`): one alert, not a second one for the collapse that follows from it."""
        spread = not self.toy and self._full("diversity")  # a toy's spread says nothing (see __init__)
        if not (spread and (diversity := _mean(self.recent["diversity"])) < self.config.diversity_low):
            return ""
        evidence["diversity"] = diversity
        return f" G's samples have collapsed as a result: {diversity:.0%} as spread out as real ones."

    def _d_collapse(self) -> Alert | None:
        if not self._full("d_g_z1", "loss_d"):
            return None
        c = self.config
        d_g_z, loss_d = _median(list(self.recent["d_g_z1"])), _median(list(self.recent["loss_d"]))
        if not (d_g_z > c.d_g_z_high and loss_d > self._limit("loss_d_high")):
            return None
        return Alert(
            "d_collapse",
            WARNING,
            self.step,
            f"The generator is overpowering the discriminator: D rates generated images as real "
            f"(D(G(z)) has a median of {d_g_z:.3f} over the last {c.window} steps) and its loss is high "
            f"({loss_d:.3f}). "
            f"D no longer teaches G anything useful. {self._advice('d_collapse')}",
            {"d_g_z1": d_g_z, "loss_d": loss_d},
        )

    def _vanishing_g_gradient(self) -> Alert | None:
        if len(self.grad_medians) < 2:
            return None
        c = self.config
        peak, now = max(self.grad_medians), self.grad_medians[-1]
        if not (peak > 0 and now < c.grad_collapse * peak):
            return None
        if self._full("d_g_z1") and _median(list(self.recent["d_g_z1"])) >= REJECTING_D_G_Z:
            return None  # D does not reject G's samples: nothing is starving G of gradient
        return Alert(
            "vanishing_g_gradient",
            WARNING,
            self.step,
            f"The generator's gradients are vanishing: grad_norm_g's median over the last {c.window} steps "
            f"is {now:.3g}, {now / peak:.1%} of its peak ({peak:.3g}). G is barely changing any more. "
            f"{self._advice('vanishing_g_gradient')}",
            {"grad_norm_g": now, "peak": peak, "ratio": now / peak},
        )

    def _mode_collapse(self) -> Alert | None:
        c = self.config
        advice = self._advice("mode_collapse")
        # while D overpowers G (or a critic has gone blind), low spread is what that does to G, once its alert said so
        said = any(self._holding.get(cause, False) for cause in self._collapse_said)
        spread = not self.toy and self._full("diversity") and not said
        if spread and (diversity := _mean(self.recent["diversity"])) < c.diversity_low:
            return Alert(
                "mode_collapse",
                ERROR,
                self.step,
                f"The generator looks mode-collapsed: over the last {c.window} steps its samples were only "
                f"{diversity:.0%} as spread out as real ones (mean pairwise distance), so it is making "
                f"near-copies of a few outputs. {advice}",
                {"diversity": diversity},
            )
        if self._latest("modes_covered") is not None:
            # the papers' count (one high-quality sample a mode), not the 20-sample one: the healthy ring recipe
            # at step 2,000 of seeds 100 and 101 had 7 and 6 modes so, but only 4 with 20 samples each
            have, out_of, what = self._latest("modes_covered"), self._latest("modes_total"), "modes"
            hq_share, confidence = self._latest("hq_share"), self._latest("classifier_confidence")
            if hq_share is not None and hq_share < TOY_ON_MODES_SHARE:
                return None  # few samples near any mode yet: G has not learned them, nothing has collapsed
            if hq_share is None and confidence is not None and confidence < READABLE_CONFIDENCE:
                return None  # Stacked MNIST: the channels are not digits yet, so no triple has been found
        else:
            have, out_of, what = self._latest("class_coverage"), self.classes, "classes"
        if have is None or not out_of or have > out_of / 2:
            return None
        return Alert(
            "mode_collapse",
            ERROR,
            self.step,
            f"The generator looks mode-collapsed: its samples cover only {have:.0f} of the {out_of:.0f} "
            f"{what} in the real data. {advice}",
            {what + "_covered": have, what + "_total": float(out_of)},
        )

    def _rising(self, name: str, growth: float, floor: float, sign: float = 1.0) -> list[float] | None:
        """The long window's four quarter means of `name` (times `sign`) when each is above the last and the
        rise is more than `growth` times the first's size (at least `floor`); else None."""
        values = [sign * value for value in self.long[name]]
        if len(values) < 4 * self.config.window:
            return None
        size = len(values) // 4
        quarters = [_mean(values[i * size : (i + 1) * size]) for i in range(4)]
        rising = all(b > a for a, b in itertools.pairwise(quarters))
        if not (rising and (quarters[-1] - quarters[0]) / max(abs(quarters[0]), floor) > growth):
            return None
        return quarters

    def _divergence(self) -> Alert | None:
        quarters = self._rising("loss_g", self.config.divergence_growth, 0.1)
        if quarters is None:
            return None
        values = self.long["loss_g"]
        return Alert(
            "divergence",
            WARNING,
            self.step,
            f"Training is diverging: G's loss has risen in each of the last four stretches of "
            f"{len(values) // 4} steps, from {quarters[0]:.3f} to {quarters[-1]:.3f}, without settling. "
            f"{self._advice('divergence')}",
            {"loss_g_start": quarters[0], "loss_g_end": quarters[-1]},
        )

    def _oscillation(self) -> Alert | None:
        values = list(self.long["loss_d"])
        if len(values) < 4 * self.config.window:
            return None
        smooth = _smooth(values, max(2, self.config.window // 10))
        ordered = sorted(smooth)
        low, centre, high = (ordered[int(q * (len(ordered) - 1))] for q in (0.1, 0.5, 0.9))
        swing = (high - low) / max(centre, 0.05)
        swings = _band_crossings(smooth, low, high)
        if not (swing > self.config.oscillation_swing and swings >= 4):
            return None
        return Alert("oscillation", WARNING, self.step,
                     f"The losses are oscillating: D's smoothed loss swung between high and low {swings} times in "
                     f"the last {len(values)} steps, by {swing:.0%} of its level, instead of settling. "
                     f"{self._advice('oscillation')}",
                     {"swing": swing, "swings": float(swings)})  # fmt: skip

    def _margins_saturated(self) -> Alert | None:
        """The hinge form of D overpowering: real scores past +1 and fake past −1, so neither term of D's
        loss has a gradient left and G's samples are told apart without effort."""
        share = self._limit("saturated_share")
        if self._full("real_above_margin", "fake_below_margin"):
            real, fake = (_median(list(self.recent[name])) for name in ("real_above_margin", "fake_below_margin"))
            if not (real >= share and fake >= share):
                return None
            seen = f"{real:.0%} of real scores were above +1 and {fake:.0%} of fake ones below −1 (medians)"
            evidence = {"real_above_margin": real, "fake_below_margin": fake}
        elif self._full("d_x", "d_g_z1"):  # a user's loop that logs D's mean scores only
            d_x, d_g_z = _median(list(self.recent["d_x"])), _median(list(self.recent["d_g_z1"]))
            if not (d_x > 1.0 and d_g_z < -1.0):
                return None
            seen = f"D(x) had a median of {d_x:.3g} and D(G(z)) {d_g_z:.3g}, both past their margins"
            evidence = {"d_x": d_x, "d_g_z1": d_g_z}
        else:
            return None
        return Alert(
            "margins_saturated",
            WARNING,
            self.step,
            f"The discriminator is saturating both hinge margins: over the last {self.config.window} steps {seen}. "
            f"D tells real from fake with room to spare, so G learns little. {self._advice('margins_saturated')}",
            evidence,
        )

    def _pairs_decided(self) -> Alert | None:
        """The relativistic form of D overpowering: D sets nearly every real image far above the fake it is
        paired with, so its loss, the mean of softplus(−(D(x) − D(G(z)))), sits near 0. Its gap need not grow
        for that: once D has won, it can hold it at any size."""
        if not self._full("loss_d"):
            return None
        loss_d = _median(list(self.recent["loss_d"]))
        if not loss_d < self._limit("decided_loss"):
            return None
        evidence = {"loss_d": loss_d}
        consequence = self._collapse_it_caused(evidence)
        return Alert(
            "pairs_decided",
            WARNING,
            self.step,
            f"The discriminator is overpowering the generator: over the last {self.config.window} steps its loss "
            f"had a median of {loss_d:.2g}, so it sets nearly every real image far above the fake it is paired "
            f"with, and G cannot catch up.{consequence} {self._advice('pairs_decided')}",
            evidence,
        )

    def _gap_diverging(self) -> Alert | None:
        """The score gap E[D(x)] − E[D(G(z))] rising window after window: D runs away from G."""
        quarters = self._rising("score_gap", self._limit("gap_growth"), self._limit("gap_floor"))
        if quarters is None:
            return None
        what = "the Wasserstein estimate" if self.family.name == "critic" else "how far D sets real above fake"
        return Alert(
            "gap_diverging",
            WARNING,
            self.step,
            f"The score gap E[D(x)] − E[D(G(z))] ({what}) is growing without bound: it rose in each of the last "
            f"four stretches of {len(self.long['score_gap']) // 4} steps, from {quarters[0]:.3g} to "
            f"{quarters[-1]:.3g}. {self._advice('gap_diverging')}",
            {"score_gap_start": quarters[0], "score_gap_end": quarters[-1]},
        )

    def _gap_collapsed(self) -> Alert | None:
        """The critic's score gap near 0 (or below: G's samples scored above real images) while G's samples are
        still poor: the critic no longer tells real from fake, so G has nothing to learn from. A gap near 0 with
        good samples is what a WGAN that has caught up looks like, so the samples are part of the rule: their
        spread, `diversity`, below `health.diversity_low`, as in the mode-collapse check. A loop that logs no
        `diversity` gets no such alert."""
        if not self._full("score_gap", "diversity"):
            return None
        gap, diversity = _median(list(self.recent["score_gap"])), _mean(self.recent["diversity"])
        if not (gap < self._limit("gap_zero") and diversity < self.config.diversity_low):
            return None
        return Alert(
            "gap_collapsed",
            WARNING,
            self.step,
            f"The critic's score gap E[D(x)] − E[D(G(z))] has collapsed to about 0 or below (a median of {gap:.3g} "
            f"over the last {self.config.window} steps) while G's samples are poor: only {diversity:.0%} as spread "
            f"out as real ones. The critic no longer tells real from fake, so G learns nothing from it. "
            f"{self._advice('gap_collapsed')}",
            {"score_gap": gap, "diversity": diversity},
        )

    def _scores_drifting(self) -> Alert | None:
        """The critic's scores moving together, (D(x) + D(G(z))) / 2, one way window after window: its loss
        only sees their difference, so nothing but a sound penalty (or a drift term) holds them in place."""
        growth, floor = self._limit("drift_growth"), self._limit("drift_floor")
        rising, falling = (self._rising("score_centre", growth, floor, sign) for sign in (1.0, -1.0))
        if rising is None and falling is None:
            return None
        start, end = (rising[0], rising[-1]) if rising else (-falling[0], -falling[-1])  # type: ignore[index]
        way = "risen" if rising else "fallen"
        return Alert(
            "scores_drifting",
            WARNING,
            self.step,
            f"The critic's scores are drifting without bound: their middle (D(x) + D(G(z))) / 2 has {way} in "
            f"each of the last four stretches of {len(self.long['score_centre']) // 4} steps, from {start:.3g} "
            f"to {end:.3g}. {self._advice('scores_drifting')}",
            {"score_centre_start": start, "score_centre_end": end},
        )

    def _penalty_dominating(self) -> Alert | None:
        """The gradient penalties outweighing the adversarial part of D's loss (|E[D(x)] − E[D(G(z))]| for a
        critic, D's loss for a relativistic D: the families that run this check). Penalties computed lazily have
        few points a window: only those logged in loss_d's window count, not the older ones among their last
        `window` values."""
        if not self._full("loss_d"):
            return None
        since = self.logged_at["loss_d"][0]
        logged = {
            name: [value for value, step in zip(self.recent[name], self.logged_at[name], strict=True) if step >= since]
            for name in PENALTIES
        }
        present = [name for name, values in logged.items() if len(values) >= 3]
        if not present:
            return None
        penalty = sum(_median(logged[name]) for name in present)
        if self.family.name == "critic":  # its loss crosses 0: the gap is the size of what it learns
            adversarial = abs(_median(list(self.recent["score_gap"]))) if self._full("score_gap") else math.nan
        else:  # the other family checked, relativistic pairing, has no real and fake halves of its loss
            adversarial = _median(list(self.recent["loss_d"]))
        if not penalty > self._limit("penalty_share") * adversarial:
            return None
        names = " + ".join(present)
        return Alert(
            "penalty_dominating",
            WARNING,
            self.step,
            f"The gradient penalty dominates D's loss: over the last {self.config.window} steps {names} had a "
            f"median of {penalty:.3g}, against {adversarial:.3g} for the adversarial part. "
            f"{self._advice('penalty_dominating')}",
            {"penalty": penalty, "adversarial": adversarial},
        )


def _band_crossings(values: list[float], low: float, high: float) -> int:
    """Moves from below `low` to above `high` or back: a level shift is one, a cycle is two."""
    moves, side = 0, 0
    for value in values:
        now = 1 if value > high else -1 if value < low else 0
        if now and now != side:
            moves += side != 0
            side = now
    return moves
