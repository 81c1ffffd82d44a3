"""The viewer on a run another tool writes (the fake format): read-only, live or idle, its images, its alerts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

import ganterm
from ganterm.dashboard.app import Dashboard
from ganterm.dashboard.plots import MetricPlot
from ganterm.dashboard.widgets import SamplesPanel
from ganterm.run.status import read_status, write_status
from ganterm.sources.foreign import LIVE_SECONDS
from tests.dashboard_runs import make_run, offered, plot_ends, settle
from tests.foreign_runs import dcgan_records, fake_formats, write_log
from tests.stylegan_folder import write_stylegan_folder
from tests.test_notify import Receiver, receiver

__all__ = ["fake_formats", "receiver"]  # fixtures, used by name


def _text(app: Dashboard, selector: str) -> str:
    return str(app.query_one(selector).render())


def _winning(first: int, last: int) -> list[dict]:
    """D near-certain of real and fake: a probability D overpowering G."""
    return [{"tag": tag, "step": step, "value": value} for step in range(first, last + 1)
            for tag, value in (("Loss_D", 0.05), ("Loss_G", 0.9), ("D(x)", 0.99), ("D_G_z1", 0.01))]  # fmt: skip


async def test_a_read_only_run_is_offered_no_control_keys_and_they_say_why(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", [*dcgan_records(1, 300), {"skip": "histogram"}, {"skip": "histogram"}])
    app = Dashboard([ganterm.open_run(tmp_path / "tb")], tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert " LIVE " in _text(app, "#header") and "step 300" in _text(app, "#header")
        assert ("read-only: TensorBoard's writer writes it; ganterm only watches it (passed over records it does "
                "not draw: 2 histogram)") in _text(app, "#alerts-text").replace("\n", " ")  # fmt: skip
        assert not {"p", "c", "g", "x"} & offered(app) and {"s", "q", "a"} <= offered(app)
        for key in "pcgx":
            await pilot.press(key)
        await pilot.pause(0.1)
        said = {notification.message for notification in app._notifications}
        assert said == {"tb is read-only: TensorBoard's writer writes it, and ganterm only watches it"}
        assert {"losses", "d_outputs"} <= {plot.panel.key for plot in app.query(MetricPlot)}
        assert app.query_one("#log").border_title == "log"  # no worker.log: TensorBoard's writer keeps none
        assert "D(x), D(G(z)) · 0.5 = equilibrium" in str(app.query_one("#plot-d_outputs", MetricPlot).render())


async def test_an_idle_run_says_since_when(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", dcgan_records(1, 10))
    then = time.time() - LIVE_SECONDS - 600
    os.utime(tmp_path / "tb" / "fake.log", (then, then))
    app = Dashboard([ganterm.open_run(tmp_path / "tb")], tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert f" IDLE  since {time.strftime('%H:%M', time.localtime(then))}" in _text(app, "#header")


async def test_the_sample_keys_step_through_a_runs_images(tmp_path: Path, fake_formats: None,
                                                          monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "sg"
    folder.mkdir()
    for kimg, shade in ((0, 40), (40, 200)):
        Image.new("RGB", (16, 16), (shade, 90, 90)).save(folder / f"fakes{kimg:06d}.png")
    write_log(folder, [*dcgan_records(1, 40), {"tag": "fakes", "step": 0, "image": str(folder / "fakes000000.png")},
                       {"tag": "fakes", "step": 40, "image": str(folder / "fakes000040.png")}])  # fmt: skip
    app = Dashboard([ganterm.open_run(folder)], tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        title = lambda: _text(app, "#samples-title")  # noqa: E731
        assert "step 40 · newest" in title()
        await pilot.press("left_square_bracket")
        assert "step 0 · 1/2" in title()
        await pilot.press("right_square_bracket")
        assert "step 40 · newest" in title() and app.query_one(SamplesPanel).files[-1].name == "fakes000040.png"


async def test_the_viewers_alerts_show_and_a_new_one_rings_and_goes_to_the_notify_url(
    tmp_path: Path, fake_formats: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "tb"
    write_log(folder, _winning(1, 300))  # an alert of the history: shown, not rung, not pushed
    app = Dashboard([ganterm.open_run(folder)], tmp_path, refresh_per_second=20, notify_url=receiver.url)
    rings: list[bool] = []
    monkeypatch.setattr(app, "bell", lambda: rings.append(True))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "The discriminator is overpowering the generator" in _text(app, "#alerts-text")
        assert rings == [] and receiver.received == []
        write_log(folder, [{"tag": "Loss_G", "step": step, "value": 0.9 + step / 50} for step in range(301, 800)])
        for _ in range(100):
            await pilot.pause(0.05)
            if rings:
                break
        await settle(pilot, app)
        assert rings == [True] and "Training is diverging" in _text(app, "#alerts-text")
    for _ in range(100):
        if receiver.received:
            break
        time.sleep(0.05)
    ((body, _),) = receiver.received
    assert body["event"] == "alert" and body["check"] == "divergence" and body["run"] == "tb"


async def test_a_tensorboard_run_and_a_ganterm_run_overlay_on_one_step_axis(tmp_path: Path, fake_formats: None):
    mine = make_run(tmp_path / "runs", "mine", "finished", steps=200)
    write_log(tmp_path / "tb", dcgan_records(1, 150))
    app = Dashboard([mine, ganterm.open_run(tmp_path / "tb")], tmp_path / "runs")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        assert "x: steps" in _text(app, "#header") and "comparing 2 runs" in _text(app, "#header")
        assert plot_ends(losses, "loss_d") == {"mine": pytest.approx(200, rel=0.02), "tb": pytest.approx(150, rel=0.02)}


async def test_a_run_without_wall_times_says_why_it_is_not_drawn_against_time(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", dcgan_records(1, 50))  # steps and values, no wall times
    app = Dashboard([ganterm.open_run(tmp_path / "tb")], tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        assert plot_ends(app.query_one("#plot-losses", MetricPlot), "loss_d")["loss_d"] == pytest.approx(50, rel=0.02)
        await pilot.press("a")
        await settle(pilot, app)
        assert "x: wall-clock time (tb: no wall times logged, not drawn)" in _text(app, "#header")
        assert "D and G loss · no wall times logged" in str(app.query_one("#plot-losses", MetricPlot).render())


async def test_a_notify_url_that_refuses_the_alert_is_said_once_on_screen(tmp_path: Path, fake_formats: None):
    refusing = Receiver(statuses=[404])
    folder = tmp_path / "tb"
    write_log(folder, dcgan_records(1, 300))
    app = Dashboard([ganterm.open_run(folder)], tmp_path, refresh_per_second=20, notify_url=refusing.url)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, app)
            write_log(folder, _winning(301, 700))
            for _ in range(200):
                await pilot.pause(0.05)
                if any("could not notify" in note.message for note in app._notifications):
                    break
            (said,) = [note.message for note in app._notifications if "could not notify" in note.message]
            assert "HTTP 404" in said and "/services/" not in said  # the URL shown without its secret path
    finally:
        refusing.stop()


async def test_a_stylegan_run_overlays_a_ganterm_run_on_the_images_seen_axis(tmp_path: Path):
    mine = make_run(tmp_path / "runs", "mine", "finished", steps=200)
    write_status(mine, {**read_status(mine), "images_per_step": 64})  # 200 steps of 64: 12,800 images
    write_stylegan_folder(tmp_path / "00000-mnist", ticks=4)  # its step is the kimg: 0, 4, 8, 12
    app = Dashboard([mine, ganterm.open_run(tmp_path / "00000-mnist")], tmp_path / "runs")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        await pilot.press("a", "a")
        await settle(pilot, app)
        assert "x: images seen" in _text(app, "#header") and "not drawn" not in _text(app, "#header")
        ends = plot_ends(app.query_one("#plot-losses", MetricPlot), "loss_d")
        assert ends["00000-mnist"] / ends["mine"] == pytest.approx(12_000 / 12_800, rel=0.02)


async def test_the_time_axis_draws_a_tensorboard_run_at_its_writers_wall_times(tmp_path: Path):
    """300 steps half a second apart, as SummaryWriter stamped them: the losses end 149.5 s in."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(300):
        writer.add_scalar("Loss_D", 1.0, step, walltime=1.7e9 + step / 2)
        writer.add_scalar("Loss_G", 2.0, step, walltime=1.7e9 + step / 2)
    writer.close()
    app = Dashboard([ganterm.open_run(tmp_path / "tb")], tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        assert plot_ends(losses, "loss_d") == {"loss_d": pytest.approx(299, rel=0.02)}  # one run: no name in its labels
        await pilot.press("a")
        await settle(pilot, app)
        assert "x: wall-clock time" in _text(app, "#header")
        assert plot_ends(losses, "loss_d") == {"loss_d": pytest.approx(149.5, rel=0.02)}
        assert "time (s)" in str(losses.render())
