"""Each health check fires on the stream it describes and stays quiet on a healthy one."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ganterm.config import HealthConfig
from ganterm.families import DEFAULT_FAMILY
from ganterm.health import HealthMonitor

Row = dict[str, float]


def healthy(step: int, rng: random.Random) -> Row:
    """Noise around the levels of a healthy mnist5k run (see health.py's docstring)."""
    return {
        "step": step,
        "d_x": rng.gauss(0.8, 0.05),
        "d_g_z1": rng.gauss(0.2, 0.05),
        "loss_d": abs(rng.gauss(0.6, 0.15)),
        "loss_g": abs(rng.gauss(2.0, 0.4)),
        "grad_norm_g": 12 * math.exp(rng.gauss(0, 0.3)),
        "diversity": rng.gauss(0.9, 0.05),
    }


def stream(steps: int, change: Callable[[int, Row], Row] | None = None, seed: int = 0) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        row = healthy(step, rng)
        rows.append(change(step, row) if change else row)
    return rows


def alerts_for(rows: list[Row], classes: int = 0, **config: float) -> list:
    monitor = HealthMonitor(HealthConfig(**config), classes=classes)
    found = []
    for start in range(0, len(rows), 10):  # the loop flushes every log.every = 10 steps
        found += monitor.update(rows[start : start + 10])
    return found


def checks(alerts: list) -> list[str]:
    return [alert.check for alert in alerts]


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_stream_raises_nothing(seed: int):
    assert alerts_for(stream(4000, seed=seed)) == []


def test_discriminator_overpowering():
    def winning_d(step: int, row: Row) -> Row:
        return {**row, "d_x": 0.995, "d_g_z1": 0.004, "loss_d": 0.01} if step > 600 else row

    alerts = alerts_for(stream(1500, winning_d))
    assert checks(alerts) == ["d_overpowering"]
    alert = alerts[0]
    assert 600 < alert.step <= 700
    assert alert.evidence["d_x"] > 0.95 and alert.evidence["d_g_z1"] < 0.05
    assert "non-saturating loss" in alert.message and "train.lr_d" in alert.message


def test_a_spiky_winning_discriminator_is_named_first():
    """The textbook D-too-strong run: near-certain D on most steps, and now and then a step where G lands a
    hit so hard (D(x) 0.2, loss_d 9) that a window's means miss every threshold. Its name comes first."""

    def spiky_d(step: int, row: Row) -> Row:
        if step <= 100:
            return row
        if step % 8 == 0:  # a hit: D is badly wrong on this step
            return {**row, "d_x": 0.2, "d_g_z1": 0.7, "loss_d": 9.0, "diversity": 0.33}
        return {**row, "d_x": 0.975, "d_g_z1": 0.025, "loss_d": 0.06, "diversity": 0.33}

    rows = stream(400, spiky_d)
    window = rows[100:200]
    assert sum(r["d_x"] for r in window) / 100 < 0.95 and sum(r["loss_d"] for r in window) / 100 > 0.1
    alerts = alerts_for(rows)
    assert checks(alerts)[0] == "d_overpowering" and alerts[0].step == 200
    assert alerts[0].evidence["decisive_share"] >= 0.85


def test_a_winning_discriminator_whose_loss_stays_above_its_floor_is_named_and_not_called_a_collapse():
    """As the plain DCGAN with D 100x faster measured at step 200: D(x) median 0.97, D(G(z)) 0.03, yet near-certain
    of both on only 38% of the steps and loss_d's median 0.14; G's samples at a third of the real spread. The
    cause is named, the collapse said in the same alert, and no mode_collapse alert blames G."""
    kinds = [
        {"d_x": 0.98, "d_g_z1": 0.02, "loss_d": 0.05},  # decisive
        {"d_x": 0.98, "d_g_z1": 0.02, "loss_d": 0.05},
        {"d_x": 0.98, "d_g_z1": 0.08, "loss_d": 0.15},
        {"d_x": 0.93, "d_g_z1": 0.02, "loss_d": 0.12},
        {"d_x": 0.60, "d_g_z1": 0.30, "loss_d": 1.50},  # G lands a hit
    ]

    def winning_d(step: int, row: Row) -> Row:
        return {**row, **kinds[step % 5], "diversity": 0.33} if step > 100 else row

    rows = stream(700, winning_d)
    assert sorted(r["loss_d"] for r in rows[100:200])[50] > 0.1  # the old rule's loss_d condition never held
    alerts = alerts_for(rows)
    assert checks(alerts) == ["d_overpowering"] and alerts[0].step == 200
    assert alerts[0].evidence["decisive_share"] < 0.5 and alerts[0].evidence["diversity"] == pytest.approx(0.33)
    assert "collapsed as a result: 33% as spread out" in alerts[0].message


def test_a_collapse_that_outlasts_the_winning_discriminator_is_told_when_d_stops_winning():
    def winning_then_even(step: int, row: Row) -> Row:
        if step <= 100:
            return row
        fight = {"d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.03} if step <= 800 else {}
        return {**row, **fight, "diversity": 0.2}

    alerts = alerts_for(stream(1200, winning_then_even))
    assert checks(alerts) == ["d_overpowering", "mode_collapse"]
    assert alerts[0].step == 200 and 800 < alerts[1].step <= 900


def test_a_collapse_that_begins_while_d_is_already_winning_is_told():
    def winning_then_collapsing(step: int, row: Row) -> Row:
        if step <= 100:
            return row
        return {**row, "d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.03, "diversity": 0.2 if step > 1000 else 0.9}

    alerts = alerts_for(stream(1300, winning_then_collapsing))
    assert checks(alerts) == ["d_overpowering", "mode_collapse"]
    assert "collapsed" not in alerts[0].message and 1000 < alerts[1].step <= 1100


def test_a_collapse_while_d_wins_again_within_the_cooldown_is_told():
    """D's second win comes inside its cooldown, so no d_overpowering alert can say what G's spread did."""

    def winning_twice(step: int, row: Row) -> Row:
        if 100 < step <= 300 or step > 500:
            return {**row, "d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.03, "diversity": 0.2 if step > 600 else 0.9}
        return row

    alerts = alerts_for(stream(900, winning_twice))
    assert checks(alerts) == ["d_overpowering", "mode_collapse"] and 600 < alerts[1].step <= 700


def test_a_toy_whose_d_wins_is_not_said_to_have_collapsed():
    """A toy's spread is low early in every run: its collapse is judged by its modes, not by `diversity`."""
    monitor = HealthMonitor(HealthConfig(), toy=True)
    rows = stream(400, lambda step, row: {**row, "d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.03, "diversity": 0.2})
    alerts = [alert for start in range(0, 400, 10) for alert in monitor.update(rows[start : start + 10])]
    assert checks(alerts) == ["d_overpowering"] and "collapsed" not in alerts[0].message


def test_a_low_least_squares_loss_alone_is_no_winning_discriminator():
    """LSGAN's loss_d sits near 0.25 at equilibrium and 0.08 for a D a little ahead (logits 0.7 and 0.3)."""

    def ahead(step: int, row: Row) -> Row:
        return {**row, "d_x": 0.67, "d_g_z1": 0.57, "loss_d": 0.08}

    assert alerts_for(stream(1000, ahead)) == []


def test_discriminator_collapse():
    def weak_d(step: int, row: Row) -> Row:
        return {**row, "d_g_z1": 0.92, "d_x": 0.5, "loss_d": 2.3} if step > 500 else row

    assert checks(alerts_for(stream(1000, weak_d))) == ["d_collapse"]


def test_vanishing_generator_gradient():
    """The minimax loss against a D that rejects G's samples: G's gradient is D(G(z)) itself, near 0."""

    def fading(step: int, row: Row) -> Row:
        return {**row, "grad_norm_g": row["grad_norm_g"] * 0.002, "d_g_z1": 0.1} if step > 800 else row

    alerts = alerts_for(stream(1200, fading))
    assert checks(alerts) == ["vanishing_g_gradient"]
    assert alerts[0].evidence["ratio"] < 0.05


def test_a_small_generator_gradient_at_ds_chance_level_is_an_equilibrium_not_a_vanishing_one():
    """As the healthy grid recipe at step 1,000: D(x) and D(G(z)) 0.5, grad_norm_g at 4% of its first window's."""

    def settled(step: int, row: Row) -> Row:
        scale = 1.0 if step <= 100 else 0.04
        return {**row, "d_x": 0.505, "d_g_z1": 0.498, "loss_d": 1.385, "grad_norm_g": row["grad_norm_g"] * scale}

    assert alerts_for(stream(1500, settled)) == []


def test_mode_collapse_from_sample_spread():
    def collapsing(step: int, row: Row) -> Row:
        return {**row, "diversity": 0.05} if step > 500 else row

    alerts = alerts_for(stream(1000, collapsing))
    assert checks(alerts) == ["mode_collapse"]
    assert alerts[0].evidence["diversity"] < 0.4
    assert "as spread out as real ones" in alerts[0].message


def test_mode_collapse_from_class_coverage():
    def with_quality(step: int, row: Row) -> Row:
        covered = 10.0 if step < 600 else 3.0
        return {**row, "class_coverage": covered} if step % 250 == 0 else row

    alerts = alerts_for(stream(1000, with_quality), classes=10)
    assert checks(alerts) == ["mode_collapse"]
    assert "cover only 3 of the 10 classes" in alerts[0].message


def test_mode_collapse_on_a_toy():
    """Samples piled onto one of 8 modes: most of them are near a mode (high quality), few modes have them."""

    def with_modes(step: int, row: Row) -> Row:
        return {**row, "modes_covered": 1.0, "modes_total": 8.0, "hq_share": 0.9} if step == 500 else row

    alerts = alerts_for(stream(800, with_modes))
    assert "cover only 1 of the 8 modes" in alerts[0].message


def test_a_toy_still_spreading_onto_its_modes_is_no_collapse():
    """The ring's healthy recipe at step 2,000 of seed 100: 7 modes have a sample, 4 have 20 of them."""

    def spreading(step: int, row: Row) -> Row:
        quality = {"modes_covered": 7.0, "modes_covered_20": 4.0, "modes_total": 8.0, "hq_share": 0.66}
        return {**row, **quality} if step == 500 else row

    assert alerts_for(stream(800, spreading)) == []


def test_a_toy_is_judged_by_its_modes_not_by_the_spread_of_its_samples():
    """Early in the ring's healthy run its samples spread 36% as far as the real ones: no alert on a toy."""

    def narrow(step: int, row: Row) -> Row:
        return {**row, "diversity": 0.36} if step < 400 else row

    assert checks(alerts_for(stream(800, narrow))) == ["mode_collapse"]
    monitor = HealthMonitor(HealthConfig(), toy=True)
    assert [a for start in range(0, 800, 10) for a in monitor.update(stream(800, narrow)[start : start + 10])] == []


def test_a_toy_generator_that_has_not_found_the_modes_yet_is_no_collapse():
    """The ring at step 1,000 of its healthy recipe: 0.6% of samples near a mode, so 0 of 8 covered."""

    def not_there_yet(step: int, row: Row) -> Row:
        return {**row, "modes_covered": 0.0, "modes_total": 8.0, "hq_share": 0.006} if step == 500 else row

    assert alerts_for(stream(800, not_there_yet)) == []


def test_stacked_mnist_is_judged_by_its_digit_triples():
    """Readable digits piled onto 40 of 1,000 triples are a collapse; unreadable blobs are not there yet."""

    def early(step: int, row: Row) -> Row:
        return {**row, "diversity": 0.25} if step < 400 else row

    def triples(covered: float, confidence: float) -> Callable[[int, Row], Row]:
        def measured(step: int, row: Row) -> Row:
            quality = {"modes_covered": covered, "modes_total": 1000.0, "classifier_confidence": confidence}
            return {**early(step, row), **quality} if step == 500 else early(step, row)

        return measured

    def alerts(change: Callable[[int, Row], Row]) -> list:
        monitor = HealthMonitor(HealthConfig(), classes=1000, toy=True)
        rows = stream(800, change)
        return [alert for start in range(0, 800, 10) for alert in monitor.update(rows[start : start + 10])]

    collapsed = alerts(triples(40, 0.9))
    assert checks(collapsed) == ["mode_collapse"] and "cover only 40 of the 1000 modes" in collapsed[0].message
    assert alerts(triples(40, 0.75)) == []  # shapes read at 75% confidence: a G still learning its digits
    assert alerts(triples(990, 0.9)) == []


def test_divergence():
    def climbing(step: int, row: Row) -> Row:
        return {**row, "loss_g": 2.0 * math.exp((step - 400) / 300)} if step > 400 else row

    assert "divergence" in checks(alerts_for(stream(1400, climbing)))


def test_oscillation():
    def swinging(step: int, row: Row) -> Row:
        return {**row, "loss_d": 0.7 + 0.6 * math.sin(2 * math.pi * step / 80)}

    alerts = alerts_for(stream(1000, swinging))
    assert checks(alerts) == ["oscillation"]


def test_nan_fires_once_per_streak():
    def nan_at(step: int, row: Row) -> Row:
        return {"step": step, "nonfinite": 1, "loss_d": None} if step in (50, 51, 52, 300) else row

    alerts = alerts_for(stream(400, nan_at))
    assert [(a.check, a.step, a.severity) for a in alerts] == [("nonfinite", 50, "error"), ("nonfinite", 300, "error")]


def test_a_long_bad_stretch_is_one_alert_and_a_relapse_is_another():
    def relapsing(step: int, row: Row) -> Row:
        bad = 300 < step <= 1200 or step > 2000
        return {**row, "d_x": 0.995, "d_g_z1": 0.004, "loss_d": 0.01} if bad else row

    alerts = alerts_for(stream(2600, relapsing))
    assert [a.check for a in alerts] == ["d_overpowering", "d_overpowering"]
    assert alerts[1].step > 2000


def test_nothing_but_nan_fires_during_warmup():
    def bad_from_start(step: int, row: Row) -> Row:
        return {**row, "diversity": 0.01}

    alerts = alerts_for(stream(400, bad_from_start), warmup=300)
    assert [a.step for a in alerts] == [300]


def test_disabled_monitor_is_silent():
    assert alerts_for(stream(500, lambda step, row: {**row, "nonfinite": 1}), enabled=False) == []


def test_a_quality_measurement_showing_collapse_raises_the_alert_in_the_loop(tmp_path: Path):
    """The loop's quality rows go through the health check: a ring whose samples pile onto one mode."""
    from types import SimpleNamespace

    from ganterm.config import HealthConfig
    from ganterm.run.jsonl import read_jsonl
    from ganterm.run.layout import RunDir
    from ganterm.run.recorder import Recorder
    from ganterm.training.loop import Schedule, measure_quality

    collapsed = {"modes_covered": 1.0, "modes_total": 8.0, "hq_share": 0.9}
    probe = SimpleNamespace(measure=lambda generator, z_dim: collapsed, waiting_for=None)
    trainer = SimpleNamespace(step=300, sampling_generator=None, config=SimpleNamespace(model=SimpleNamespace(z_dim=2)))
    recorder = Recorder(RunDir(tmp_path), log=lambda message: None, health=HealthMonitor(HealthConfig(warmup=0)))
    measure_quality(trainer, recorder, Schedule(1000, quality=probe))  # type: ignore[arg-type]
    recorder.close()
    alerts = [event for event in read_jsonl(recorder.run.events) if event["kind"] == "alert"]
    assert [(a["check"], a["step"]) for a in alerts] == [("mode_collapse", 300)]
    assert "cover only 1 of the 8 modes" in alerts[0]["message"]


@pytest.mark.parametrize(("data", "judged_by_spread"), [("stacked-mnist", False), ("mnist5k", True)])
def test_stacked_mnist_runs_are_not_judged_by_the_spread_of_their_samples(
    tmp_path: Path, data: str, judged_by_spread: bool
):
    """A fresh G's samples are near-identical blobs: on mnist5k that is the spread check's business, not here."""
    from ganterm.run.jsonl import read_jsonl
    from ganterm.run.layout import RunDir
    from tests.conftest import tiny_config, train_in_process

    run = RunDir(tmp_path / data)
    quick = ("train.steps=40", "health.warmup=0", "health.window=10", "health.diversity_low=0.99")
    config = tiny_config(*quick, data=data)
    assert train_in_process(run, config) == 0
    alerts = [event["check"] for event in read_jsonl(run.events) if event["kind"] == "alert"]
    assert ("mode_collapse" in alerts) == judged_by_spread, alerts


# ----- at the thresholds: each check's numbers exact, on a 10-step window judged after every row -----


def judged(rows: list[dict], classes: int = 0, family: str = DEFAULT_FAMILY, **config: float) -> list:
    """The alerts of `rows` fed one at a time to a monitor with a 10-step window and no warm-up."""
    monitor = HealthMonitor(HealthConfig(**{"window": 10, "warmup": 0, **config}), classes=classes, family=family)
    return [alert for row in rows for alert in monitor.update([row])]


EVEN = {"d_x": 0.5, "d_g_z1": 0.5, "loss_d": 0.7}  # D at chance: no check fires
WINNING = {"d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.7}  # near-certain of both


LOSING = [{"d_x": x, "d_g_z1": round(1 - x, 2), "loss_d": 0.7} for x in (0.5, 0.6, 0.7, 0.8, 0.9)]


def test_d_overpowering_on_exactly_half_the_window_says_the_windows_medians():
    [alert] = judged([{"step": step, **kind} for step, kind in enumerate([WINNING] * 5 + LOSING, 1)])
    assert (alert.check, alert.step) == ("d_overpowering", 10)
    assert alert.evidence == pytest.approx({"d_x": 0.945, "d_g_z1": 0.055, "loss_d": 0.7, "decisive_share": 0.5})
    assert "D(x) had a median of 0.945 and D(G(z)) 0.055, with loss_d at 0.700" in alert.message
    assert "near-certain of both on 50% of the steps" in alert.message
    assert alert.event() == {"check": "d_overpowering", "severity": "warning", "message": alert.message,
                             "evidence": alert.evidence}  # fmt: skip


def test_a_value_that_is_no_finite_number_stays_out_of_the_window():
    """A user's loop may log an infinity or a string now and then: the window holds the ten numbers after it."""
    odd = {"step": 1, "d_x": math.inf, "d_g_z1": "n/a", "loss_d": math.inf}
    rows = [odd] + [{"step": step, **kind} for step, kind in enumerate([WINNING] * 5 + LOSING, 2)]
    [alert] = judged(rows)
    assert alert.step == 11 and alert.evidence["decisive_share"] == 0.5


def test_a_nonfinite_step_is_said_with_its_step_and_what_to_do():
    [alert] = judged([{"step": 7, "nonfinite": 1}])
    assert (alert.check, alert.severity, alert.step) == ("nonfinite", "error", 7)
    assert alert.message.startswith("Step 7 produced a NaN or infinite loss or gradient, so its update was skipped")
    assert "train.max_bad_steps" in alert.message


@pytest.mark.parametrize("edge", [{"d_x": 0.95}, {"d_g_z1": 0.05}])
def test_a_step_at_a_threshold_itself_is_not_a_near_certain_one(edge: dict):
    kinds = [WINNING] * 4 + [{**WINNING, **edge}] + LOSING
    assert judged([{"step": step, **kind} for step, kind in enumerate(kinds, 1)]) == []


@pytest.mark.parametrize(("again_from", "fired_at"), [(56, [10, 60]), (55, [10])])
def test_a_check_fires_again_once_its_cooldown_has_passed_and_not_a_step_sooner(again_from: int, fired_at: list):
    """Won at once, even from step 11, winning again from `again_from`: its window is half won 4 steps later."""
    rows = [{"step": step, **(WINNING if step <= 10 or step >= again_from else EVEN)} for step in range(1, 80)]
    assert [alert.step for alert in judged(rows, cooldown=50)] == fired_at


def test_d_collapse_says_its_medians_and_needs_both_above_their_thresholds():
    weak = {"d_x": 0.5, "d_g_z1": 0.9, "loss_d": 2.0}
    [alert] = judged([{"step": step, **weak} for step in range(1, 11)])
    assert (alert.check, alert.severity, alert.step) == ("d_collapse", "warning", 10)
    assert alert.evidence == pytest.approx({"d_g_z1": 0.9, "loss_d": 2.0})
    assert "D(G(z)) has a median of 0.900 over the last 10 steps) and its loss is high (2.000)" in alert.message
    for edge in ({"d_g_z1": 0.8}, {"loss_d": 1.5}):
        assert judged([{"step": step, **weak, **edge} for step in range(1, 11)]) == []


@pytest.mark.parametrize(("d_g_z", "said"), [(0.1, True), (0.2, False)])
def test_a_vanishing_gradient_is_a_window_median_against_its_peak_while_d_rejects_g(d_g_z: float, said: bool):
    """grad_norm_g's window medians 10, then 0.4 (4% of the peak); D(G(z)) at 0.2 is no rejection."""
    norms = [9.0, 10.0, 11.0] * 3 + [10.0] + [0.3, 0.4, 0.5] * 3 + [0.4]
    rows = [{"step": step, "grad_norm_g": norm, "d_g_z1": d_g_z} for step, norm in enumerate(norms, 1)]
    alerts = judged(rows)
    assert checks(alerts) == (["vanishing_g_gradient"] if said else [])
    if said:
        assert (alerts[0].step, alerts[0].severity) == (20, "warning")
        assert alerts[0].evidence == pytest.approx({"grad_norm_g": 0.4, "peak": 10.0, "ratio": 0.04})
        assert "is 0.4, 4.0% of its peak (10)" in alerts[0].message
    at_the_edge = [{**row, "grad_norm_g": 0.5} if row["step"] > 10 else row for row in rows]  # 5% of the peak
    assert judged(at_the_edge) == []


@pytest.mark.parametrize(("covered", "said"), [(5, True), (6, False)])
def test_half_the_classes_covered_is_a_collapse_and_one_more_is_not(covered: int, said: bool):
    rows = [{"step": step, "class_coverage": covered} for step in range(1, 4)]
    alerts = judged(rows, classes=10)
    assert checks(alerts) == (["mode_collapse"] if said else [])
    if said:
        assert "cover only 5 of the 10 classes" in alerts[0].message and alerts[0].severity == "error"
        assert "minibatch-std" in alerts[0].message  # what to try
        assert alerts[0].evidence == {"classes_covered": 5, "classes_total": 10.0}


def test_a_toy_or_stacked_mnist_is_judged_from_a_quarter_of_its_samples_near_modes_or_80_percent_confidence():
    toy = {"modes_covered": 3, "modes_total": 8}
    assert checks(judged([{"step": 1, **toy, "hq_share": 0.25}])) == ["mode_collapse"]
    assert judged([{"step": 1, **toy, "hq_share": 0.24}]) == []
    stacked = {"modes_covered": 40, "modes_total": 1000}
    assert checks(judged([{"step": 1, **stacked, "classifier_confidence": 0.8}])) == ["mode_collapse"]
    assert judged([{"step": 1, **stacked, "classifier_confidence": 0.79}]) == []


def test_divergence_is_each_quarter_of_four_windows_above_the_last_by_more_than_the_growth():
    """Quarter means 1, 2, 3, 4: G's loss grew 3x its level; quarters 1, 1.2, 1.5, 2 grew exactly 1x: no alert."""

    def quarters(means: list[float]) -> list[dict]:
        return [{"step": 10 * q + i + 1, "loss_g": mean} for q, mean in enumerate(means) for i in range(10)]

    [alert] = judged(quarters([1.0, 2.0, 3.0, 4.0]))
    assert (alert.check, alert.step) == ("divergence", 40)
    assert alert.evidence == pytest.approx({"loss_g_start": 1.0, "loss_g_end": 4.0})
    assert "in each of the last four stretches of 10 steps, from 1.000 to 4.000" in alert.message
    assert judged(quarters([1.0, 1.2, 1.5, 2.0])) == []
    assert checks(judged(quarters([0.0, 0.05, 0.1, 0.2]))) == ["divergence"]  # from 0: grown by 2x of 0.1
    assert checks(judged(quarters([1.0, 1.9, 1.95, 2.05]))) == ["divergence"]  # grown by 1.05x of the first
    assert judged(quarters([1.0, 1.0, 2.0, 3.0])) == []  # a flat stretch is no rise


@pytest.mark.parametrize(
    "edge",
    [{"d_x": 0.99, "d_g_z1": 0.05, "loss_d": 0.7}, {"d_x": 0.95, "d_g_z1": 0.01, "loss_d": 0.7},
     {"d_x": 0.9, "d_g_z1": 0.01, "loss_d": 0.1}],
)  # fmt: skip
def test_medians_at_d_overpowerings_thresholds_are_no_alert(edge: dict):
    assert judged([{"step": step, **edge} for step in range(1, 11)]) == []


@pytest.mark.parametrize(("diversity", "said"), [(0.375, True), (0.5, False)])
def test_a_spread_at_the_threshold_is_no_collapse(diversity: float, said: bool):
    alerts = judged([{"step": step, "diversity": diversity} for step in range(1, 11)], diversity_low=0.5)
    assert [(a.check, a.severity, a.step) for a in alerts] == ([("mode_collapse", "error", 10)] if said else [])


@pytest.mark.parametrize("logged", [("d_g_z1", "loss_d"), ("d_x", "d_g_z1"), ("d_x", "loss_d"), ("loss_d",)])
def test_a_loop_that_logs_only_some_of_ds_numbers_gets_no_d_alert_and_no_crash(logged: tuple):
    winning = {"d_x": 0.99, "d_g_z1": 0.01, "loss_d": 0.01}
    assert judged([{"step": step, **{k: winning[k] for k in logged}} for step in range(1, 21)]) == []


# ----- oscillation, worked by hand: a 10-step window smooths loss_d over 2 steps and judges the last 40 -----
# loss_d sits at 1.0 with spikes of 2 steps: up to P, smoothed 1.0, (1 + P) / 2, P, (P + 1) / 2, 1.0; down to 0.5,
# smoothed 0.75, 0.5, 0.75. The band is the smoothed values' 10% and 90% quantiles (sorted[3] and sorted[35] of
# 40), its level their median (sorted[19]); a swing is a move from below the band to above it, or back.

BASE = [1.0] * 3
DOWN = [0.5, 0.5]


def swings(values: list[float], window: int = 10) -> list:
    """The alerts of loss_d `values`, each stretched over window / 10 steps, fed one at a time."""
    stretched = [value for value in values for _ in range(window // 10)]
    return judged([{"step": step, "loss_d": value} for step, value in enumerate(stretched, 1)], window=window)


def six_swings(second: float) -> list[float]:
    """Four spikes up to 2.0 (the second's second step at `second`), three down: 6 swings in 40 steps."""
    up, dip = [2.0, 2.0], BASE + DOWN + BASE
    return [1.0] * 5 + up + dip + [2.0, second] + dip + up + dip + up + BASE


def test_oscillation_says_its_swings_and_their_size_from_the_smoothed_loss_band():
    """Smoothed: 0.5 three times and 0.75 six, so the band starts at sorted[3] = 0.75; 1.0 nineteen times (the
    level); 1.5 seven times, (2 + 2.75) / 2 = 2.375 and 2.0 three times above the band, whose top is the one
    (2.75 + 1) / 2 = 1.875 just below them (1.5 is sorted[34]). Swing: (1.875 − 0.75) / 1.0 = 1.125."""
    [alert] = swings(six_swings(2.75))
    assert (alert.check, alert.severity, alert.step) == ("oscillation", "warning", 40)
    assert alert.evidence == {"swing": 1.125, "swings": 6.0}
    assert alert.message.startswith(
        "The losses are oscillating: D's smoothed loss swung between high and low 6 times in the last 40 steps, "
        "by 112% of its level, instead of settling. The two networks are chasing each other; lower both "
        "learning rates (train.lr_g, train.lr_d)."
    )


def test_a_swing_of_exactly_the_limit_is_no_oscillation():
    """The band's top at (2.5 + 1) / 2 = 1.75: a swing of (1.75 − 0.75) / 1.0, health.oscillation_swing itself."""
    assert swings(six_swings(2.5)) == []


@pytest.mark.parametrize(("window", "swing"), [(10, 1.25), (30, 5 / 3)])
def test_four_swings_are_an_oscillation(window: int, swing: float):
    """A one-step spike to 3.0 first (smoothed 3.0, then 2.0), then down, up, down, up: 4 swings.

    Window 10: 0.5 twice and 0.75 four times, so the band starts at 0.75; 2.0 five times and 3.0 three times,
    so it ends at 2.0: (2.0 − 0.75) / 1.0. Window 30 takes each value for 3 steps and smooths over 3: a dip
    reads 5/6, 2/3, 0.5 four times, 2/3, 5/6, so 0.5 eight times and the band starts at sorted[11] = 2/3 of
    120; 3.0 eleven times above 7/3, sorted[107]: (7/3 − 2/3) / 1.0."""
    up, dip = [3.0, 3.0], BASE + DOWN + BASE
    values = [3.0] + dip + up + dip + up + [1.0] * 19
    [alert] = swings(values, window)
    assert (alert.step, alert.evidence) == (4 * window, {"swing": pytest.approx(swing), "swings": 4.0})


def test_three_swings_are_no_oscillation_and_a_one_step_spike_to_the_bands_edge_is_no_swing():
    """Down twice, up, down, up twice: 3 swings. A one-step spike to 3.0 between the two first dips smooths to 2.0,
    2.0, the band's top, not above it; a one-step dip between the two last spikes to 0.75, 0.75, its bottom."""
    up, dip = [3.0, 3.0], BASE + DOWN + BASE
    values = [1.0] * 2 + DOWN + BASE + [3.0] + dip + up + dip + up + BASE + [0.5] + BASE + up + BASE
    assert len(values) == 40 and swings(values) == []


# ----- the monitor's bookkeeping, and what each alert says -----


def test_an_odd_window_takes_its_middle_value_as_the_median():
    weak = [{"step": step, "d_g_z1": 0.8 + step / 100, "loss_d": 2.0} for step in range(1, 12)]
    [alert] = judged(weak, window=11)
    assert alert.evidence == pytest.approx({"d_g_z1": 0.86, "loss_d": 2.0}, rel=1e-9)


def test_divergence_reads_only_the_last_four_windows():
    """A first window at 20, then four rising from 1 to 4: told at step 50, once the last 20 has left the window."""
    rows = [
        {"step": 10 * q + i + 1, "loss_g": mean} for q, mean in enumerate([20.0, 1.0, 2.0, 3.0, 4.0]) for i in range(10)
    ]
    [alert] = judged(rows)
    assert (alert.check, alert.severity, alert.step) == ("divergence", "warning", 50)
    assert alert.evidence == pytest.approx({"loss_g_start": 1.0, "loss_g_end": 4.0})
    assert alert.message.endswith("Lower both learning rates, or resume from an earlier checkpoint.")


def test_a_row_without_a_step_is_taken_as_the_step_before_it():
    [alert] = judged([{"step": 5, "loss_d": 1.0}, {"nonfinite": 1}])
    assert alert.step == 5 and alert.message.startswith("Step 5 produced")
    [alert] = judged([{"nonfinite": 1}])
    assert alert.step == 0


def test_every_alert_of_a_flush_is_returned():
    monitor = HealthMonitor(HealthConfig(window=10, warmup=0))
    alerts = monitor.update([{"step": 1, "nonfinite": 1}, {"step": 2, "loss_d": 0.7}])
    assert [(alert.check, alert.step) for alert in alerts] == [("nonfinite", 1)]


def test_a_user_loop_counting_from_step_0_is_judged_from_step_0_without_a_warmup():
    alerts = judged([{"step": 0, "class_coverage": 3}], classes=10)
    assert [(alert.check, alert.step) for alert in alerts] == [("mode_collapse", 0)]


def test_an_unlabelled_run_has_no_classes_to_count_coverage_against():
    monitor = HealthMonitor(HealthConfig(window=10, warmup=0))
    assert monitor.update([{"step": 1, "class_coverage": 0}]) == []


def test_a_collapse_said_by_d_overpowering_is_not_repeated_when_another_alert_comes_in_the_same_flush():
    monitor = HealthMonitor(HealthConfig(window=10, warmup=0))
    rows = [{"step": 1, "nonfinite": 1}] + [{"step": step, **WINNING, "diversity": 0.2} for step in range(2, 12)]
    alerts = monitor.update(rows)
    assert checks(alerts) == ["nonfinite", "d_overpowering"]
    assert "collapsed as a result: 20% as spread out" in alerts[1].message


def test_d_overpowerings_message_says_the_collapse_only_below_the_spread_threshold():
    [alert] = judged([{"step": step, **WINNING, "diversity": 0.5} for step in range(1, 11)], diversity_low=0.5)
    assert alert.check == "d_overpowering" and "diversity" not in alert.evidence
    assert (
        "G's gradient vanishes and it stops learning. Try the non-saturating loss (loss.kind=nonsat)" in alert.message
    )


def test_a_least_squares_d_is_said_to_sit_at_its_targets():
    [alert] = judged([{"step": step, **WINNING} for step in range(1, 11)], family="least-squares")
    assert alert.check == "d_overpowering" and "D was at its targets for both on 100% of the steps" in alert.message


def test_the_score_centre_is_the_mean_of_ds_outputs():
    """A critic's D(x) and D(G(z)) 1 either side of a middle rising 10, 20, 30, 40 a window (its warm-up is 500)."""
    rows = [
        {"step": 500 + 10 * q + i, "d_x": centre + 1, "d_g_z1": centre - 1}
        for q, centre in enumerate([10.0, 20.0, 30.0, 40.0])
        for i in range(10)
    ]
    [alert] = judged(rows, family="critic")
    assert alert.check == "scores_drifting"
    assert alert.evidence == pytest.approx({"score_centre_start": 10.0, "score_centre_end": 40.0})


def test_d_collapse_and_vanishing_gradient_say_what_to_try():
    [collapse] = judged([{"step": step, "d_x": 0.5, "d_g_z1": 0.9, "loss_d": 2.0} for step in range(1, 11)])
    assert collapse.message.endswith(
        "Try a higher D learning rate (train.lr_d), more D steps (train.n_critic), or resume from an earlier "
        "checkpoint."
    )
    norms = [10.0] * 10 + [0.4] * 10
    [vanishing] = judged([{"step": step, "grad_norm_g": norm, "d_g_z1": 0.1} for step, norm in enumerate(norms, 1)])
    assert vanishing.message.endswith(
        "With the minimax loss this is what a winning D does; switch to loss.kind=nonsat, or weaken D."
    )


def test_a_vanishing_gradient_is_told_at_any_scale():
    norms = [0.1] * 10 + [0.004] * 10
    [alert] = judged([{"step": step, "grad_norm_g": norm, "d_g_z1": 0.1} for step, norm in enumerate(norms, 1)])
    assert alert.check == "vanishing_g_gradient" and alert.evidence == pytest.approx(
        {"grad_norm_g": 0.004, "peak": 0.1, "ratio": 0.04}
    )


def test_grad_norm_gs_median_is_taken_once_a_window():
    """Medians at steps 10, 20, 30: 10, 10 (half the window fell at step 16) and 0.4."""
    norms = [10.0] * 15 + [0.4] * 15
    [alert] = judged([{"step": step, "grad_norm_g": norm, "d_g_z1": 0.1} for step, norm in enumerate(norms, 1)])
    assert (alert.check, alert.step) == ("vanishing_g_gradient", 30)
