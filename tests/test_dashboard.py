"""The dashboard as a user drives it: Textual's Pilot for every key and run state, snapshots of the main screen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from PIL import Image as PILImage
from plotext._utility import colors_to_ansi
from rich.text import Text
from textual.geometry import Region
from textual.widgets import Label

from ganterm.dashboard import widgets as widgets_module
from ganterm.dashboard.app import ASKED, Dashboard
from ganterm.dashboard.header import Header, Headline, header_text
from ganterm.dashboard.plot_grid import MIN_PLOT_HEIGHT, PlotGrid
from ganterm.dashboard.plots import RUN_COLOURS, MetricPlot, View, nice_ticks
from ganterm.dashboard.screens import ConfirmScreen, HelpScreen, RunPicker
from ganterm.dashboard.series import Series, SeriesStore, bucket_means, envelope, smooth
from ganterm.dashboard.widgets import AlertsPanel, SamplesPanel, legible_part
from ganterm.errors import UserError
from ganterm.progress import Follower, clock
from ganterm.run import control
from ganterm.run import status as run_status
from ganterm.run.layout import RunDir
from ganterm.run.schema import PANELS, stats_line
from ganterm.run.status import read_status, write_status
from ganterm.sources import follow as reader_module
from ganterm.sources import history as history_module
from ganterm.sources.columns import columns_from_rows
from ganterm.sources.follow import RunReader
from ganterm.training.sample import image_grid, save_png
from tests.conftest import wait_for
from tests.dashboard_runs import START, append_metrics, make_run, metric_rows, offered, plot_ends, settle


def _text(app: Dashboard, selector: str) -> str:
    return str(app.query_one(selector).render())


def _commands(run: RunDir) -> list[str]:
    if not run.control.exists():
        return []
    return [orjson.loads(line)["cmd"] for line in run.control.read_bytes().splitlines()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


# ----- series and reader --------------------------------------------------------------------


def test_envelope_keeps_a_one_step_spike_and_bounds_the_points():
    steps = np.arange(1_000_000)
    values = np.ones(1_000_000, dtype=np.float32)
    values[654_321] = 50.0
    values[123_456] = -7.0
    x, lows, highs = envelope(steps, values, buckets=100)
    assert len(x) == 100 and highs.max() == 50.0 and lows.min() == -7.0
    assert (highs == 50.0).sum() == 1 and (lows == -7.0).sum() == 1


def test_the_envelope_is_each_buckets_raw_min_and_max_at_the_mean_lines_steps():
    steps = np.arange(10, 10 + 1003 * 3, 3)  # logged every third step, not a multiple of the buckets
    values = np.random.default_rng(0).normal(size=len(steps))
    x, lows, highs = envelope(steps, values, buckets=10)
    line_x, _, sizes = bucket_means(steps, values, buckets=10)
    assert np.array_equal(x, line_x)  # the spread sits behind its own bucket of the line, not half a bucket off
    starts = np.cumsum(np.concatenate([[0], sizes[:-1]])).astype(int)
    for start, size, low, high in zip(starts, sizes.astype(int), lows, highs, strict=True):
        assert (low, high) == (values[start : start + size].min(), values[start : start + size].max())


def test_a_series_keeps_order_as_history_goes_in_front_and_live_points_behind():
    series = Series()
    series.extend(np.arange(5000, 5010), np.arange(5000, 5010, dtype=np.float32))
    for start in range(4000, -1, -1000):  # history, newest chunk first, as the reader sends it
        series.prepend(np.arange(start, start + 1000), np.arange(start, start + 1000, dtype=np.float32))
        series.extend(np.arange(series.steps[-1] + 1, series.steps[-1] + 3), np.zeros(2, dtype=np.float32))
    assert series.size == 5010 + 10
    assert np.array_equal(series.steps, np.arange(0, 5020))
    assert np.array_equal(series.values[:5010], np.arange(0, 5010, dtype=np.float32))


def test_rows_of_several_shapes_become_columns_with_gaps_as_nan():
    rows = [
        {"step": 2, "t": 1.0, "loss_d": 0.5, "lr_d": 2e-4},
        {"step": 1, "t": 0.5, "loss_d": None, "lr_d": 2e-4},  # NaN is written as null
        {"step": 2, "t": 1.0, "fd_classifier": 40.0},
        {"step": 3, "t": 1.5, "loss_d": 0.25, "lr_d": "high"},  # a string: a malformed row, where lr_d is read
    ]
    columns, bad = columns_from_rows(rows, wanted=lambda name: name != "lr_d")
    assert set(columns) == {"t", "loss_d", "fd_classifier"} and bad == 0
    steps, values = columns["loss_d"]
    assert steps.tolist() == [1, 2, 3] and np.isnan(values[0]) and values[1:].tolist() == [0.5, 0.25]
    assert columns["fd_classifier"][0].tolist() == [2]
    columns, bad = columns_from_rows(rows)
    assert bad == 1 and columns["lr_d"][0].tolist() == [1, 2]


def test_smoothing_is_debiased_and_independent_of_zoom():
    constant = np.full(50, 3.0)
    assert np.allclose(smooth(constant, 0.99), 3.0)  # no pull towards zero at the start
    values = np.linspace(0, 10, 400)
    full = smooth(values, 0.9)
    _, means, sizes = bucket_means(np.arange(400), values, buckets=100)
    coarse = smooth(means, 0.9, sizes)
    assert abs(coarse[-1] - full[-1]) < 0.15  # four-step buckets draw nearly the same curve
    assert np.array_equal(smooth(values, 0.0), values)


def test_reader_waits_for_a_torn_line_and_skips_a_bad_one(root: Path):
    run = make_run(root, "torn", "external", steps=3)
    reader = RunReader(run)
    assert reader.poll().rows == 3 + 0
    with open(run.metrics, "ab") as handle:
        handle.write(b'not json\n{"step": 4, "t": 4.0, "loss_d": 0.')
    update = reader.poll()
    assert update.rows == 0 and reader.bad_lines == 1
    with open(run.metrics, "ab") as handle:
        handle.write(b"7}\n")
    update = reader.poll()
    assert update.rows == 1 and float(update.columns["loss_d"][1][0]) == pytest.approx(0.7)


def _read_all(reader: RunReader, store: SeriesStore | None = None) -> SeriesStore:
    """Polls as the viewer does until nothing more is coming; the store the viewer would have."""
    store = store or SeriesStore()
    deadline = time.monotonic() + 60
    while True:
        update = reader.poll()
        store.add_columns(update.columns, update.rows)
        store.add_columns(update.history, update.history_rows, history=True)
        if not update.more:
            return store
        assert time.monotonic() < deadline, "history never finished loading"
        time.sleep(0.02)


@pytest.fixture
def long_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    """3,000 steps read as a long run is: the newest ~16 kB first, the rest by helpers in ~40 kB pieces."""
    monkeypatch.setattr(reader_module, "NEWEST_FIRST_BYTES", 16_000)
    monkeypatch.setattr(history_module, "CHUNK_BYTES", 40_000)
    return make_run(root, "long", "finished", steps=3000, total=3000)


def test_history_behind_the_newest_steps_arrives_whole_and_in_order(long_run: RunDir):
    reader = RunReader(long_run)
    first = reader.poll()
    assert first.rows < 200 and first.more  # the newest steps come first, on their own
    store = SeriesStore()
    store.add_columns(first.columns, first.rows)
    _read_all(reader, store)
    assert np.array_equal(store.get("loss_d").steps, np.arange(1, 3001))
    assert np.array_equal(store.get("fd_classifier").steps, np.arange(50, 3001, 50))
    assert store.rows == 3000 + 60 and reader.bad_lines == 0


def test_history_pieces_of_a_killed_helper_are_parsed_by_the_viewer(long_run: RunDir):
    reader = RunReader(long_run)
    assert reader.history is not None
    for helper in reader.history._helpers:
        helper.kill()
    store = _read_all(reader)
    assert np.array_equal(store.get("loss_d").steps, np.arange(1, 3001))


def _gone(pids: list[int]) -> bool:
    """No such process, not even a zombie (`<defunct>`) left for its parent to reap."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_closing_a_reader_stops_its_history_helpers_and_reaps_them(long_run: RunDir):
    reader = RunReader(long_run)
    assert reader.history is not None
    helpers = [helper.pid for helper in reader.history._helpers]
    assert helpers
    reader.close()
    wait_for(lambda: _gone(helpers), timeout=10, what="the helpers to be stopped and reaped")
    assert not reader.poll().more


def test_history_helpers_that_delivered_everything_are_reaped(long_run: RunDir):
    reader = RunReader(long_run)
    assert reader.history is not None
    helpers = [helper.pid for helper in reader.history._helpers]
    _read_all(reader)
    wait_for(lambda: _gone(helpers), timeout=10, what="the helpers to be reaped")


def test_reader_notices_a_rewound_run(root: Path):
    run = make_run(root, "rewound", "external", steps=20)
    reader = RunReader(run)
    reader.poll()
    run.metrics.write_bytes(run.metrics.read_bytes()[:200])
    assert reader.poll().reset


# ----- states -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "shown", "reason"),
    [
        ("running", "RUNNING", None),
        ("paused", "PAUSED", None),
        ("finished", "FINISHED", "finished all 400 steps"),
        ("stopped", "STOPPED", "continue with ganterm train --resume"),
        ("failed", "FAILED", "RuntimeError: out of memory"),
        ("lost", "LOST", "the process writing it stopped beating"),
        ("external", "EXTERNAL", "metrics only"),
    ],
)
async def test_every_run_state_opens_and_says_why_it_ended(root: Path, state: str, shown: str, reason: str | None):
    run = make_run(root, "r", state)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        header = _text(app, "#header")
        assert "r" in header and shown in header and "step 200" in header
        if reason:
            assert reason in _text(app, "#alerts-text")
        plots = {plot.panel.key for plot in app.query(MetricPlot)}
        assert {"losses", "d_outputs", "grad_norms", "fd_classifier"} <= plots


async def test_a_live_worker_that_stopped_beating_reads_as_stalled_not_lost(root: Path, monkeypatch):
    monkeypatch.setattr(run_status, "HEARTBEAT_STALE_SECONDS", 0.5)
    run = make_run(root, "r", "running")  # this test's own process stands for the worker
    write_status(run, {**read_status(run), "heartbeat": time.time() - 1})
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "STALLED" in _text(app, "#header")
        assert f"stalled: its worker (pid {os.getpid()}) is alive but has not reported" in _text(app, "#alerts-text")
        await pilot.press("c")  # worker keys still reach it: the command waits until it goes on
        await pilot.pause()
        assert _commands(run) == ["checkpoint"]


async def test_eta_comes_from_the_wall_clock_of_recent_steps(root: Path):
    run = make_run(root, "r", "running", steps=200, total=400)  # 0.1 s a step, real-sized timestamps
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        header = _text(app, "#header")
        assert "ETA 0:00:19" in header or "ETA 0:00:20" in header  # 200 steps left at 0.1 s


async def test_the_dashboard_and_the_terminal_follower_give_the_same_eta(root: Path):
    """One ETA for every viewer: a resumed run's early, slow steps count for neither."""
    run = make_run(root, "r", "running", steps=400, total=800)
    rows = orjson.loads(b"[" + b",".join(run.metrics.read_bytes().splitlines()) + b"]")
    slow = [{**row, "t": row["t"] - 3600} if row["step"] <= 20 else row for row in rows]  # an hour's break
    run.metrics.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in slow))
    eta = clock(Follower(run).poll().eta_seconds())
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert f"ETA {eta}" in _text(app, "#header") and eta in ("0:00:39", "0:00:40")  # 400 steps at 0.1 s


def test_the_stats_line_leaves_out_what_a_row_lacks():
    row = {"loss_d": 0.6931, "loss_g": 2, "d_x": None, "d_g_z1": 0.4912, "img_per_s": 611.6}
    assert stats_line(row) == "loss_d 0.693  loss_g 2.000  D(G(z)) 0.49  612 img/s"
    assert stats_line({}) == ""


def test_every_worker_key_sends_a_command_the_worker_knows():
    """The dashboard's commands are control.COMMANDS, no more, no fewer."""
    assert set(ASKED) == set(control.COMMANDS)


def test_a_gpu_reading_comes_before_the_device_and_displaces_its_long_name():
    status = {"step": 10, "total": 100, "device": "cuda:0 (NVIDIA H100 80GB HBM3)"}
    with_gpu = header_text(Headline.of("r", "running", status, SeriesStore(), "GPU 87% · 5.1/80.0 GB", 1), View()).plain
    assert "· GPU 87% · 5.1/80.0 GB · cuda:0\n" in with_gpu and "H100" not in with_gpu
    without = header_text(Headline.of("r", "running", status, SeriesStore(), None, 1), View()).plain
    assert "· cuda:0 (NVIDIA H100 80GB HBM3)\n" in without


async def test_alerts_read_like_a_log_oldest_first_and_the_ending_last(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        alerts = _text(app, "#alerts-text")
        assert alerts.index("D is overpowering G") < alerts.index("NaN at step 90") < alerts.index("finished all 400")
        assert "step 200: loss_d 0.5" in "\n".join(str(line.text) for line in app.query_one("#log").lines)


def _raise_alerts(run: RunDir, steps: range) -> None:
    with open(run.events, "ab") as handle:
        for step in steps:
            handle.write(orjson.dumps({"t": START + step, "step": step, "kind": "alert", "check": "oscillation",
                                       "severity": "warning", "message": f"alert of step {step}"}) + b"\n")  # fmt: skip


async def test_every_alert_stays_reachable_and_the_newest_is_in_view(root: Path):
    """Sixty alerts in a panel of a few lines: it sits at the newest, and scrolling up reaches the first."""
    run = make_run(root, "live", "running")
    _raise_alerts(run, range(200, 6200, 100))
    app = Dashboard([run], root, refresh_per_second=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        panel = app.query_one(AlertsPanel)
        assert panel.max_scroll_y > 0 and panel.scroll_y == panel.max_scroll_y  # the newest at the bottom, in view
        assert all(f"alert of step {step}" in _text(app, "#alerts-text") for step in range(200, 6200, 100))
        panel.scroll_home(animate=False)
        await pilot.pause()
        assert panel.scroll_y == 0 and _text(app, "#alerts-text").split("\n")[2].endswith("alert of step 200")
        _raise_alerts(run, range(6200, 6300, 100))  # the user reads old ones: a new alert does not scroll them away
        await pilot.pause(0.3)
        await settle(pilot, app)
        assert panel.scroll_y == 0 and "alert of step 6200" in _text(app, "#alerts-text")
        panel.scroll_end(animate=False)  # back at the bottom, it follows the newest again
        await pilot.pause()
        _raise_alerts(run, range(6300, 6400, 100))
        await pilot.pause(0.3)
        await settle(pilot, app)
        assert "alert of step 6300" in _text(app, "#alerts-text") and panel.scroll_y == panel.max_scroll_y


async def test_a_new_alert_rings_the_bell_and_pops_up_but_old_ones_do_not(root: Path, monkeypatch):
    run = make_run(root, "live", "running")  # holds two alerts from before the viewer opened
    app = Dashboard([run], root, refresh_per_second=20)
    rings: list[bool] = []
    monkeypatch.setattr(app, "bell", lambda: rings.append(True))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert rings == [] and not app._notifications
        alert = {"t": time.time(), "step": 201, "kind": "alert", "check": "mode_collapse", "severity": "error",
                 "message": "The generator looks mode-collapsed."}  # fmt: skip
        with open(run.events, "ab") as handle:
            handle.write(orjson.dumps(alert) + b"\n")
        await pilot.pause(0.5)
        await settle(pilot, app)
        assert rings == [True]
        (shown,) = app._notifications
        assert shown.message == "live, step 201: The generator looks mode-collapsed." and shown.severity == "error"


async def test_new_points_appear_while_watching(root: Path):
    run = make_run(root, "live", "running", steps=100)
    app = Dashboard([run], root, refresh_per_second=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert app.primary.store.get("loss_d").size == 100
        append_metrics(run, metric_rows(101, 150))
        await pilot.pause(0.5)
        await settle(pilot, app)
        assert app.primary.store.get("loss_d").size == 150
        assert float(app.primary.store.get("loss_d").steps[-1]) == 150


async def test_a_new_status_on_disk_redraws_the_header(root: Path):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root, refresh_per_second=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "RUNNING" in _text(app, "#header")
        write_status(run, {**read_status(run), "state": "paused"})
        for _ in range(40):  # the reader polls, the app's timer sets the headline, the header's watcher draws it
            await pilot.pause(0.05)
            if "PAUSED" in _text(app, "#header"):
                break
        assert "PAUSED" in _text(app, "#header") and app.headline.state == "paused"


async def test_the_header_draws_the_apps_state_and_nothing_else(root: Path):
    """State flows down: a headline or view set on the app is on the header at once."""
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        app.headline = replace(app.headline, name="renamed", state="stopped")
        app.view = replace(app.view, log_scale=True)
        header = _text(app, "#header")
        assert header.startswith("renamed") and "STOPPED" in header and "log scale" in header


async def test_new_points_redraw_only_the_plots_whose_series_changed(root: Path):
    run = make_run(root, "live", "running", steps=100)
    app = Dashboard([run], root, refresh_per_second=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        redrawn: list[str] = []
        for plot in app.query(MetricPlot):
            plot.show = lambda runs, view, show=plot.show, key=plot.panel.key: (redrawn.append(key), show(runs, view))

        async def redrawn_after(change) -> set[str]:
            redrawn.clear()
            change()
            await pilot.pause(0.3)
            await settle(pilot, app)
            return set(redrawn)

        await redrawn_after(lambda: None)  # whatever the first layout left to redraw at its final size
        training = lambda: append_metrics(run, metric_rows(101, 120))  # noqa: E731  (no quality row among them)
        assert await redrawn_after(training) == {"losses", "d_outputs", "grad_norms", "d_losses"}
        quality = lambda: append_metrics(run, [{"step": 120, "t": START + 120, "fd_classifier": 30.0}])  # noqa: E731
        assert await redrawn_after(quality) == {"fd_classifier"}
        assert await redrawn_after(lambda: None) == set()
        assert await redrawn_after(lambda: setattr(app, "view", replace(app.view, smoothing=0.0))) == {
            "losses", "d_outputs", "grad_norms", "d_losses", "fd_classifier"
        }  # fmt: skip


# ----- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "command"), [("c", "checkpoint"), ("g", "snapshot")])
async def test_worker_keys_send_commands(root: Path, key: str, command: str):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press(key)
        assert _commands(run) == [command]


async def test_pause_key_pauses_a_running_run_and_resumes_a_paused_one(root: Path):
    running, paused = make_run(root, "a", "running"), make_run(root, "b", "paused")
    for run, expected in ((running, "pause"), (paused, "unpause")):
        app = Dashboard([run], root)
        async with app.run_test() as pilot:
            await settle(pilot, app)
            await pilot.press("p")
        assert _commands(run) == [expected]


@pytest.mark.parametrize("state", ["finished", "stopped", "failed", "lost", "external"])
async def test_a_run_without_a_worker_is_offered_no_worker_keys_and_they_refuse_if_pressed(root: Path, state: str):
    """No pause, checkpoint, sample or stop in the footer; pressed anyway, one sentence each and nothing sent."""
    run = make_run(root, "done", state)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert not {"p", "c", "g", "x"} & offered(app) and {"s", "q"} <= offered(app)
        for key in "pcgx":
            await pilot.press(key)
        await pilot.pause(0.1)
        assert _commands(run) == [] and not isinstance(app.screen, ConfirmScreen)
        said = [notification.message for notification in app._notifications]
        assert said == [f"done is {state}: there is no worker to {command}" for command in
                        ("pause", "checkpoint", "snapshot", "stop")]  # fmt: skip


async def test_the_worker_keys_leave_the_footer_when_the_runplot_ends(root: Path):
    run = make_run(root, "live", "running")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert {"p", "c", "g", "x"} <= offered(app)
        write_status(run, {**read_status(run), "state": "finished"})
        for _ in range(200):  # up to 10 s: a loaded machine polls late
            await pilot.pause(0.05)
            if "FINISHED" in _text(app, "#header"):
                break
        await pilot.pause()
        assert not {"p", "c", "g", "x"} & offered(app)


async def test_stop_asks_first_and_no_is_the_default(root: Path):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        question = app.screen.query_one(Label)
        assert app.screen.query_one(".modal-box").region.width < question.region.width + 12  # fits its words
        await pilot.press("enter")  # the focused button is "No"
        assert _commands(run) == []
        await pilot.press("x", "y")
        assert _commands(run) == ["stop"]


async def test_ctrl_c_asks_and_can_leave_training_running(root: Path):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
    assert app.return_value == "left" and _commands(run) == []
    app = Dashboard([run], root)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+c", "y")
    assert app.return_value == "stopped" and _commands(run) == ["stop"]


async def test_quit_leaves_training_alone(root: Path):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("q")
    assert app.return_value == "left" and _commands(run) == []


async def test_view_keys_change_smoothing_scale_and_window(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "smoothing 0.6 · linear · whole run" in _text(app, "#header")
        await pilot.press("s", "l", "z")
        assert "smoothing 0.9 · log scale · last 500 steps" in _text(app, "#header")
        await pilot.press("s", "s")
        assert "no smoothing" in _text(app, "#header")


def _run_of_batch(root: Path, name: str, steps: int, seconds_per_step: float, images_per_step: int) -> RunDir:
    """A finished run whose steps took `seconds_per_step` each; images_per_step 0 leaves it unsaid."""
    run = make_run(root, name, "finished", steps=steps, total=steps)
    run.metrics.write_bytes(b"")
    append_metrics(run, [{**row, "t": START + row["step"] * seconds_per_step} for row in metric_rows(1, steps)])
    status = {**read_status(run), **({"images_per_step": images_per_step} if images_per_step else {})}
    write_status(run, status)
    return run


async def test_the_x_axis_key_lines_runs_of_other_batch_sizes_up_by_time_and_images(root: Path):
    """Same images per second, batch 32 against 128: apart by step, together by wall-clock time and images seen."""
    runs = [
        _run_of_batch(root, "b32", 400, 0.1, 32),
        _run_of_batch(root, "b128", 100, 0.4, 128),
        _run_of_batch(root, "ownloop", 100, 0.4, 0),
    ]
    app = Dashboard(runs, root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        assert "x: steps" in _text(app, "#header")
        assert plot_ends(losses, "loss_d") == {"b32": pytest.approx(400, rel=0.02),
                                               "b128": pytest.approx(100, rel=0.02),
                                               "ownloop": pytest.approx(100, rel=0.02)}  # fmt: skip
        await pilot.press("a")
        await settle(pilot, app)
        assert "x: wall-clock time" in _text(app, "#header")
        ends = plot_ends(losses, "loss_d")
        assert ends["b32"] == pytest.approx(ends["b128"], rel=0.03) and ends["b32"] == pytest.approx(40, rel=0.03)
        assert "time (s)" in str(losses.render())
        await pilot.press("a")
        await settle(pilot, app)
        header = _text(app, "#header")
        assert "x: images seen" in header and "ownloop: images per step unknown, not drawn" in header
        ends = plot_ends(losses, "loss_d")
        assert set(ends) == {"b32", "b128"}
        assert ends["b32"] == pytest.approx(ends["b128"], rel=0.03) and ends["b32"] == pytest.approx(12_800, rel=0.03)
        assert "10k" in str(losses.render())  # ticks read as images, not as a long number
        await pilot.press("a")
        assert "x: steps" in _text(app, "#header")


async def test_zoom_keeps_the_newest_point_of_a_metric_measured_less_often_than_the_window(root: Path):
    run = make_run(root, "r", "finished", steps=2000, total=2000)
    append_metrics(run, [{"step": 1000, "t": START + 10.0, "rare_metric": 40.0}])
    app = Dashboard([run], root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        await pilot.press("z")
        await settle(pilot, app)
        quality = app.query_one("#plot-rare_metric", MetricPlot)
        assert {tuple(xs) for xs in quality.plt.monitor.x} == {(1000.0,)} and "no data" not in str(quality.render())


async def test_a_zoomed_sparse_metric_follows_the_window_as_new_steps_arrive(root: Path):
    """Its own points do not change, yet the window moves past one of them: that point leaves the panel."""
    run = make_run(root, "r", "running", steps=2000, total=4000)
    append_metrics(run, [{"step": s, "t": START + s * 0.1, "rare_metric": 40.0 - s / 100} for s in (1600, 1800)])
    app = Dashboard([run], root, refresh_per_second=20)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        await pilot.press("z")
        await settle(pilot, app)
        quality = app.query_one("#plot-rare_metric", MetricPlot)
        assert {tuple(xs) for xs in quality.plt.monitor.x} == {(1600.0, 1800.0)}
        append_metrics(run, metric_rows(2001, 2200))
        for _ in range(100):  # the reader polls the file
            await pilot.pause(0.05)
            if app.primary.store.last_step() == 2200:
                break
        await settle(pilot, app)
        assert {tuple(xs) for xs in quality.plt.monitor.x} == {(1800.0,)}


async def test_zoom_leaves_out_an_overlaid_run_that_ended_before_the_window(root: Path):
    """Zoomed to the long run's last 500 steps, a 200-step run has nothing there: the axis stays 1,500-2,000."""
    runs = [make_run(root, "long", "finished", steps=2000, total=2000), make_run(root, "short", "finished", steps=200)]
    app = Dashboard(runs, root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        await pilot.press("z")
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        assert min(min(xs) for xs in losses.plt.monitor.x) >= 1500
        assert _starts(losses, "loss_d").keys() == {"long"}


async def test_zoom_shows_the_same_stretch_of_images_and_time_for_runs_of_other_batch_sizes(root: Path):
    """Zoomed to 500 steps of batch 32 (16,000 images), the batch-128 run shows its last 16,000 images too,
    not its own last 500 steps (64,000)."""
    runs = [_run_of_batch(root, "b32", 2400, 0.1, 32), _run_of_batch(root, "b128", 600, 0.4, 128)]
    app = Dashboard(runs, root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        await pilot.press("a", "z")
        await settle(pilot, app)
        starts = _starts(losses, "loss_d")
        assert "time (min)" in str(losses.render())
        assert starts["b32"] == pytest.approx(starts["b128"], abs=0.03) and 190 / 60 <= starts["b32"] <= 192 / 60
        await pilot.press("a")
        await settle(pilot, app)
        starts = _starts(losses, "loss_d")
        assert starts["b32"] == pytest.approx(starts["b128"], abs=256) and 60_800 <= starts["b32"] <= 61_200


def _starts(plot: MetricPlot, metric: str) -> dict[str, float]:
    monitor = plot.plt.monitor
    return {label.split()[0]: min(xs) for xs, label in zip(monitor.x, monitor.label, strict=True)
            if f" {metric} " in f" {label} "}  # fmt: skip


async def test_the_time_axis_follows_training_rows_not_a_quality_row_written_later(root: Path):
    """A finished run's last quality point may come minutes after its last step: the curves still end at 4 s."""
    run = make_run(root, "r", "finished", steps=40, total=40)
    app = Dashboard([run], root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        append_metrics(run, [{"step": 40, "t": START + 300.0, "fd_classifier": 30.0}])  # read while watching
        await pilot.pause(1.0)
        await settle(pilot, app)
        await pilot.press("a")
        await settle(pilot, app)
        assert plot_ends(app.query_one("#plot-losses", MetricPlot), "loss_d")["loss_d"] == pytest.approx(3.9, abs=0.2)


async def test_a_run_with_no_images_per_step_says_why_it_is_not_drawn_against_images(root: Path):
    run = make_run(root, "own", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, app)
        await pilot.press("a", "a")
        await settle(pilot, app)
        assert "D and G loss · images per step unknown" in str(app.query_one("#plot-losses", MetricPlot).render())


async def test_the_spread_key_hides_and_shows_the_raw_min_max_behind_the_smoothed_line(root: Path):
    run = make_run(root, "r", "finished", steps=2000, total=2000)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)

        def grey_series() -> int:
            return sum(colours[0] == "gray" for colours in losses.plt.monitor.color)  # a colour per point

        assert grey_series() == 2 * len(losses.panel.metrics)  # each metric's bucket minima and maxima
        await pilot.press("e")
        await settle(pilot, app)
        assert grey_series() == 0 and "raw spread hidden" in _text(app, "#header")
        await pilot.press("e")
        await settle(pilot, app)
        assert grey_series() == 2 * len(losses.panel.metrics)


@pytest.mark.parametrize(
    ("first", "last", "smallest", "ticks"),
    [
        (1, 400, 1.0, [100, 200, 300, 400]),
        (0, 1, 1.0, [0, 1]),  # steps: never a tick between two steps
        (0, 0.9, 0.0, [0, 0.5]),
        (0.1, 0.35, 0.0, [0.1, 0.2, 0.3]),  # 0.3, not 0.30000000000000004
        (0.0, 0.0, 0.0, [0.0]),  # a single point on the time axis: one tick, not 0, 5e-10, 1e-09
    ],
)
def test_x_ticks_are_round_numbers(first: float, last: float, smallest: float, ticks: list[float]):
    assert nice_ticks(first, last, smallest=smallest) == ticks


async def test_zoom_shows_only_the_last_steps(root: Path):
    run = make_run(root, "r", "finished", steps=2000, total=2000)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        plot = app.query_one("#plot-losses", MetricPlot)
        assert "1,000" in str(plot.render())  # the whole run's axis
        await pilot.press("z")
        await settle(pilot, app)
        assert 1500 <= min(plot.plt.monitor.x[0]) < 1510  # the last 500 steps, drawn at their buckets' middles
        rendered = str(plot.render())
        assert "1,000" not in rendered and "1,800" in rendered


async def test_a_view_plotext_cannot_draw_says_so_instead_of_crashing(root: Path):
    run = make_run(root, "short", "finished", steps=2, total=2)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("l")
        await settle(pilot, app)
        losses = app.query_one("#plot-losses", MetricPlot)
        assert str(losses.render()) == "D and G loss: too few points to draw in this view"
        await pilot.press("l")
        await settle(pilot, app)
        assert "loss_d" in str(losses.render())


async def test_quality_panels_come_first_and_a_constant_one_has_a_clean_axis(root: Path):
    run = make_run(root, "r", "finished")
    quality = [
        {"step": s, "t": START + s, "class_coverage": 10.0, "fd_classifier": 300.0 / s} for s in range(10, 201, 10)
    ]
    append_metrics(run, quality)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        extra = [plot.panel.key for plot in app.query(MetricPlot)][len(PANELS) :]
        assert extra == ["fd_classifier", "class_coverage"]
        axis = str(app.query_one("#plot-class_coverage", MetricPlot).render())
        assert "10.0" in axis and "10.00000" not in axis


@pytest.mark.parametrize("size", [(120, 40), (145, 44)])  # a terminal; a browser tab of 1400×900 pixels
async def test_every_panel_fits_on_screen_when_each_can_have_a_legible_height(root: Path, size: tuple[int, int]):
    """Six panels in three rows: the quality panels below are drawn whole, not left to scroll to."""
    run = make_run(root, "r", "finished")
    append_metrics(run, [{"step": s, "t": START + s, "class_kl": 1 / s} for s in range(50, 401, 50)])
    app = Dashboard([run], root)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        plots = app.query_one(PlotGrid)
        shown = [plot for plot in app.query(MetricPlot) if plot.display]
        assert [plot.panel.key for plot in shown][len(PANELS) :] == ["fd_classifier", "class_kl"]
        assert plots.max_scroll_y == 0
        assert all(plot.region.height == plot.size.height >= MIN_PLOT_HEIGHT for plot in shown)


async def test_a_quality_panel_arriving_later_still_takes_its_place_in_front(root: Path):
    run = make_run(root, "live", "running")
    append_metrics(run, [{"step": s, "t": START + s, "diversity": 0.9} for s in range(1, 201)])
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert [plot.panel.key for plot in app.query(MetricPlot)][len(PANELS) :] == ["fd_classifier", "diversity"]
        append_metrics(run, [{"step": 250, "t": START + 250, "class_kl": 0.1}])  # a metric first logged late in the run
        await pilot.pause(0.6)
        await settle(pilot, app)
        extra = [plot.panel.key for plot in app.query(MetricPlot)][len(PANELS) :]
        assert extra == ["fd_classifier", "class_kl", "diversity"]


async def test_sample_keys_step_through_grids(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        title = lambda: _text(app, "#samples-title")  # noqa: E731
        assert "step 200 · newest" in title()
        await pilot.press("left_square_bracket")
        assert "step 100 · 1/2" in title()
        await pilot.press("right_square_bracket")
        assert "step 200 · newest" in title()
        assert app.query_one(SamplesPanel).files[-1].name == "step_0000200.png"


async def test_without_terminal_graphics_a_grid_shows_as_many_samples_as_stay_legible(root: Path, monkeypatch):
    monkeypatch.setattr(widgets_module, "CELL_PICTURES", True)  # as over SSH, even if pytest runs in Kitty
    run = make_run(root, "r", "finished")
    grid = image_grid(torch.rand(64, 1, 28, 28) * 2 - 1)  # as the worker writes it: 8×8 cells of 30 px
    save_png(grid, run.sample_path(300))
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "step 300 · newest · 16 of 64" in _text(app, "#samples-title")
        assert app.query_one("#samples-image").image.size == (4 * 30 + 2, 4 * 30 + 2)  # the top-left 4×4
        await pilot.resize_terminal(200, 60)  # a wider side panel: more samples at the same legible size
        await pilot.pause(0.2)
        assert "step 300 · newest · 56 of 64" in _text(app, "#samples-title")
        await pilot.press("left_square_bracket")  # an older grid written without a layout stays whole
        assert "of" not in _text(app, "#samples-title")
        assert app.query_one("#samples-image").image.size == (62, 62)


def test_legible_part_keeps_pictures_it_cannot_read_whole_and_counts_what_it_shows():
    picture = PILImage.new("RGB", (242, 242))
    assert legible_part(picture, None, (34, 44)) == (picture, 0, 0)
    assert legible_part(picture, "64 8 8 30 30", (400, 400)) == (picture, 64, 64)
    one, shown, total = legible_part(picture, "64 8 8 30 30", (5, 5))
    assert (one.size, shown, total) == ((32, 32), 1, 64)
    ten = PILImage.new("RGB", (122, 92))  # 10 images, 4 a row: the third row holds two
    part, shown, total = legible_part(ten, "10 4 3 30 30", (24, 24))
    assert (part.size, shown, total) == ((92, 92), 8, 10)  # 3×3 cells, one of them empty


async def test_help_lists_every_key_and_closes(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = app.screen.query_one("Static")
        help_text = str(shown.render())
        for words in ("pause", "checkpoint", "stop", "smooth", "zoom", "next run", "older samples", "quit"):
            assert words in help_text
        lines = help_text.splitlines()  # and on screen whole, not squeezed into an empty box
        assert shown.region.width >= max(map(len, lines)) and shown.region.height >= len(lines)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_log_key_hides_the_worker_log(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        assert not app.query_one("#log").display


async def test_next_and_previous_run(root: Path):
    first, second = make_run(root, "a-first", "finished"), make_run(root, "b-second", "stopped")
    app = Dashboard([first], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        await settle(pilot, app)
        assert app.primary.name == "b-second" and "STOPPED" in _text(app, "#header")
        await pilot.press("N")
        await settle(pilot, app)
        assert app.primary.name == "a-first"
    del second


async def test_picker_filters_switches_and_compares(root: Path):
    make_run(root, "mnist-a", "finished")
    make_run(root, "ring-b", "stopped")
    make_run(root, "mnist-c", "failed")
    app = Dashboard([RunDir(root / "mnist-a")], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("r")
        assert isinstance(app.screen, RunPicker)
        await pilot.press(*"ring")
        listing = app.screen.query_one("SelectionList")
        assert listing.option_count == 1
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.primary.name == "ring-b"
        await pilot.press("r", *"mnist", "down", "space", "down", "space", "enter")
        await settle(pilot, app)
        assert sorted(w.name for w in app.watched.values()) == ["mnist-a", "mnist-c"]
        assert "comparing 2 runs" in _text(app, "#header")
        rendered = str(app.query_one("#plot-losses", MetricPlot).render())
        assert "mnist-a loss_d" in rendered and "mnist-c loss_d" in rendered


async def test_command_line_comparison_gives_each_run_its_own_colour(root: Path):
    runs = [make_run(root, name, "finished") for name in ("x", "y")]
    app = Dashboard(runs, root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        colours = [watched.colour for watched in app.watched.values()]
        assert len(set(colours)) == 2


def test_eight_compared_runs_get_eight_colours_a_16_colour_terminal_has():
    codes = [colors_to_ansi(colour, "default", "default") for colour in RUN_COLOURS]
    assert all(codes) and len(set(codes)) == len(RUN_COLOURS)
    assert colors_to_ansi("gray", "default", "default") not in codes  # the raw spread's colour


@pytest.mark.parametrize("size", [(80, 24), (60, 20), (200, 60)])
async def test_small_and_large_terminals_do_not_crash(root: Path, size: tuple[int, int]):
    run = make_run(root, "r", "running")
    app = Dashboard([run], root)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        await pilot.press("s", "l", "z", "question_mark", "escape")
        assert "RUNNING" in _text(app, "#header")
        assert app.screen.has_class("tiny") == (size == (60, 20))


async def test_resizing_the_terminal_rearranges_the_panels(root: Path):
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        layouts = []
        for size in ((80, 24), (120, 40), (60, 20), (120, 40)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            layouts.append((app.screen.has_class("narrow"), app.screen.has_class("tiny")))
        assert layouts == [(True, False), (False, False), (True, True), (False, False)]


def test_the_viewer_never_imports_torch(root: Path):
    run = make_run(root, "r", "finished")
    probe = (
        "import sys, asyncio\n"
        "from pathlib import Path\n"
        "from ganterm.dashboard.app import Dashboard\n"
        "from ganterm.run.layout import RunDir\n"
        "async def main():\n"
        f"    app = Dashboard([RunDir(Path({str(run.path)!r}))], Path({str(root)!r}))\n"
        "    async with app.run_test() as pilot:\n"
        "        await pilot.pause(0.5)\n"
        "asyncio.run(main())\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


# ----- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]):
    root = tmp_path / "runs"
    run = make_run(root, "mnist5k-demo", "finished")
    app = Dashboard([run], root)

    async def loaded(pilot) -> None:
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=loaded)


# ----- plotext internals ----------------------------------------------------------------------

# The private names of plotext and textual-plotext that MetricPlot.render (dashboard/plots.py) draws through.
PLOTEXT_PRIVATE_NAMES = (
    ("plotext._utility", "colors_to_ansi"),
    ("plotext._figure._figure_class", "_set_size"),
    ("plotext._figure._figure_class", "_set_sizes"),
    ("plotext._figure._figure_class", "_build_matrix"),
    ("plotext._figure._figure_class", "monitor"),  # an instance attribute: checked on a figure, below
    ("textual_plotext.PlotextPlot", "_get_plotext_theme_name"),
)
PINNED = (
    "MetricPlot.render in ganterm/dashboard/plots.py draws plotext's cell matrix itself because build() takes "
    "about twice as long (see bench/dashboard.py); pyproject.toml pins plotext and textual-plotext for it. "
    "Move render to the public build() or adapt it, then move the pins."
)


def test_the_plotext_internals_the_plots_draw_through_are_still_there():
    """Fails with a sentence naming what changed when a plotext or textual-plotext upgrade drops a private name."""
    import importlib
    from importlib.metadata import version

    from plotext._figure import _figure_class

    owners = {
        "plotext._utility": importlib.import_module("plotext._utility"),
        "plotext._figure._figure_class": _figure_class(),
        "textual_plotext.PlotextPlot": importlib.import_module("textual_plotext").PlotextPlot,
    }
    missing = [f"{owner}.{name}" for owner, name in PLOTEXT_PRIVATE_NAMES if not hasattr(owners[owner], name)]
    matrix = getattr(getattr(owners["plotext._figure._figure_class"], "monitor", None), "matrix", None)
    missing += [f"monitor.matrix.{name}" for name in ("rows", "cols", "marker", "fullground", "style", "background")
                if not hasattr(matrix, name)]  # fmt: skip
    versions = f"plotext {version('plotext')}, textual-plotext {version('textual-plotext')}"
    assert not missing, f"{versions} no longer have {', '.join(missing)}. {PINNED}"


async def test_the_plots_draw_what_plotexts_public_build_draws(root: Path):
    """The fast path through plotext's cell matrix shows the same characters in the same styles as build()."""
    run = make_run(root, "r", "finished")
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for key in ("losses", "d_outputs"):  # braille lines, the grey spread as points, a reference line
            plot = app.query_one(f"#plot-{key}", MetricPlot)
            fast = plot.render()
            public = Text.from_ansi(plot.plt.build().removesuffix("\n"), no_wrap=True, end="")  # its canvas ends a line
            assert fast.plain == public.plain, f"plotext's cell matrix no longer draws what build() draws. {PINNED}"
            styles = [(fast.get_style_at_offset(app.console, i), public.get_style_at_offset(app.console, i))
                      for i in range(len(fast.plain))]  # fmt: skip
            changed = sum(mine != theirs for mine, theirs in styles)
            assert not changed, f"{changed} cells take other colours than build() gives them. {PINNED}"


def _fed_by_own_loop(run: RunDir, **fields: object) -> None:
    """Make a hand-made run look as ganterm.Run writes it: a user's loop that takes some commands."""
    status = read_status(run)
    write_status(run, {**status, "loop": "own", "resumable": False, "controls": ["stop", "pause", "unpause"], **fields})


async def test_a_users_loop_gets_only_the_keys_that_act_on_it(root: Path):
    """No checkpoint or sample key in the footer; pressed anyway, one sentence at once and nothing sent."""
    run = make_run(root, "own", "running")
    _fed_by_own_loop(run)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        keys = offered(app)
        assert {"p", "x"} <= keys and not {"c", "g"} & keys
        await pilot.press("c")
        await pilot.press("g")
        await pilot.pause(0.1)
        assert _commands(run) == []
        said = [notification.message for notification in app._notifications]
        refusal = "own is fed by its own training loop, which does not take {!r}"
        assert said == [refusal.format("checkpoint"), refusal.format("snapshot")]
        await pilot.press("p")
        await pilot.pause(0.1)
        assert _commands(run) == ["pause"]


async def test_a_stopped_users_loop_is_not_offered_a_resume_it_cannot_do(root: Path):
    run = make_run(root, "own-stopped", "stopped")
    _fed_by_own_loop(run)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        ending = _text(app, "#alerts-text")
        assert "stopped at step" in ending and "--resume" not in ending


async def test_the_header_counts_the_processes_of_a_distributed_run(root: Path):
    run = make_run(root, "wide", "running")
    write_status(run, {**read_status(run), "world_size": 4})
    app = Dashboard([run], root)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot, app)
        assert "4 processes" in str(app.query_one(Header).render())


def _on_screen(app: Dashboard, selector: str) -> list[str]:
    """The widget's lines as the terminal shows them: cut at its edge."""
    widget = app.query_one(selector)
    strips = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return ["".join(segment.text for segment in strip) for strip in strips]


async def test_the_header_says_what_quality_waits_for_until_it_is_ready(root: Path):
    """A first run's wait note and the x axis both fit a 120-column terminal."""
    run = make_run(root, "fresh", "running")
    write_status(run, {**read_status(run), "waiting_for": "the cifar10 classifier (trained once)"})
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("z", "l", "e")  # a long view: zoomed, log scale, spread hidden
        await settle(pilot, app)
        second_line = _on_screen(app, "#header")[1]
        assert "x: steps" in second_line, second_line
        assert "quality waits for the cifar10 classifier (trained once)" in second_line, second_line
        write_status(run, {**read_status(run), "waiting_for": None, "heartbeat": time.time()})
        await pilot.pause(1.0)
        await settle(pilot, app)
        assert "waits for" not in str(app.query_one(Header).render())


async def test_a_run_the_viewer_cannot_control_says_so_and_the_viewer_goes_on(root: Path, monkeypatch):
    """Someone else's shared run: p answers with one sentence; the dashboard keeps showing the run."""
    run = make_run(root, "theirs", "running")

    def refused(target: RunDir, command: str) -> str:
        raise UserError(f"cannot control run {target.name!r}: its folder is not writable by you (Permission denied)")

    monkeypatch.setattr(control, "send", refused)
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        await pilot.pause(0.1)
        assert [n.message for n in app._notifications][-1].startswith("cannot control run 'theirs'")
        assert app.is_running


async def test_metrics_named_as_loops_name_them_each_get_a_panel(root: Path):
    """`train/loss`, `acc@1`, `D(x)` are ordinary names in SummaryWriter loops; `losses` is also a shared panel's."""
    run = make_run(root, "r", "finished", steps=20, total=20)
    names = ["train/loss", "acc@1", "a.b", "D(x)", "ü", "losses", "my-metric", "my_x2d_metric"]
    append_metrics(run, [{"step": 21, "t": START + 30.0, **{name: 1.0 + i for i, name in enumerate(names)}}])
    app = Dashboard([run], root)
    async with app.run_test(size=(200, 120)) as pilot:
        await settle(pilot, app)
        titles = {plot.panel.title for plot in app.query(MetricPlot) if plot.display}
        assert set(names) <= titles
        assert len({plot.id for plot in app.query(MetricPlot)}) == len(list(app.query(MetricPlot)))


# ----- loss families ------------------------------------------------------------------------


def _critic_run(root: Path, name: str, loss: str | None) -> RunDir:
    """A finished run whose D outputs are a critic's raw scores (real about +3, fake about -3)."""
    run = make_run(root, name, "finished")
    rows = [{"step": step, "t": START + step, "d_x": 3.0 + 0.01 * step, "d_g_z1": -3.0, "score_gap": 6.0 + 0.01 * step,
             "gp": 0.3} for step in range(201, 260)]  # fmt: skip
    append_metrics(run, rows)
    if loss is not None:
        write_status(run, {**read_status(run), "loss": loss})
    return run


def _d_panel(app: Dashboard) -> tuple[str, list[float]]:
    plot = app.query_one("#plot-d_outputs", MetricPlot)
    return plot.render().plain, sorted(plot.plt.monitor.hcoord[0])


@pytest.mark.parametrize(
    ("loss", "title", "lines"),
    [
        ("wgan-gp", "critic scores D(x), D(G(z)) · only differences count", [0.0]),
        ("hinge", "D(x), D(G(z)) raw scores · margins at ±1", [-1.0, 1.0]),
        ("lsgan", "D(x), D(G(z)) raw outputs · targets 1 real, 0 fake", [0.0, 1.0]),
        (None, "D(x), D(G(z)) · 0.5 = equilibrium", [0.5]),  # a run from before families: as it always read
        ("nonsat", "D(x), D(G(z)) · 0.5 = equilibrium", [0.5]),
    ],
)
async def test_the_d_panel_reads_d_as_the_runs_loss_family_says(root: Path, loss: str | None, title: str, lines):
    app = Dashboard([_critic_run(root, "r", loss)], root)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot, app)
        shown, references = _d_panel(app)
        assert title in shown and references == lines
        extra = {plot.panel.key: plot.render().plain for plot in app.query(MetricPlot)}
        assert "score gap E[D(x)] − E[D(G(z))]" in extra["score_gap"] and "gradient penalty" in extra["gp"]


async def test_runs_of_two_loss_families_share_the_d_panel_without_a_line_that_fits_one(root: Path):
    runs = [_critic_run(root, "critic", "wgan-gp"), _critic_run(root, "dcgan", None)]
    app = Dashboard(runs, root)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot, app)
        shown, references = _d_panel(app)
        assert "read each by its loss: critic, probability" in shown and references == []


async def test_a_grid_too_large_to_decode_is_said_and_the_viewer_goes_on(root: Path, monkeypatch):
    """Another tool's image may declare any size; Pillow refuses a decompression bomb with an error of its own."""
    run = make_run(root, "r", "finished")
    monkeypatch.setattr(widgets_module.PILImage, "MAX_IMAGE_PIXELS", 10)  # every grid is now "too large"
    app = Dashboard([run], root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "step 200 · too large to show" in _text(app, "#samples-title")
        assert app.is_running
