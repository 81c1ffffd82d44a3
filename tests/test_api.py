"""A user's own training loop feeds the same run directory, alerts and dashboard."""

from __future__ import annotations

import datetime
import warnings
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ganterm
from ganterm.cli import app as cli_app
from ganterm.dashboard.app import Dashboard
from ganterm.dashboard.plots import MetricPlot
from ganterm.errors import UserError
from ganterm.run import layout
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
from ganterm.run.text import TEXT_LIMIT
from ganterm.run.values import RESERVED_NAMES
from ganterm.sources import GantermRun
from tests.conftest import a_rival_claims_between_check_and_create
from tests.test_dashboard import settle


def test_a_loop_logs_numbers_and_images_and_finishes(tmp_path: Path):
    with ganterm.Run("mine", root=tmp_path, total=40, flush_every=8) as run:
        for step in range(1, 41):
            run.log(step, loss_d=torch.tensor(1.0 / step), loss_g=2.0, sharpness=float(step))
        run.images(40, torch.zeros(16, 1, 28, 28))
    directory = RunDir(tmp_path / "mine")
    rows = read_jsonl(directory.metrics)
    assert [row["step"] for row in rows] == list(range(1, 41))
    assert rows[3]["loss_d"] == pytest.approx(0.25) and rows[-1]["sharpness"] == 40.0
    status = read_status(directory)
    assert status["state"] == "finished" and status["step"] == 40 and status["total"] == 40
    assert [p.name for p in directory.sample_files()] == ["step_0000040.png"]
    assert "img_per_s" not in rows[0] and "images_per_step" not in status  # not said: the viewer cannot know


def test_a_loop_that_gives_its_batch_size_gets_img_per_s_and_an_images_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Logged every 10th step, 1 s between flushes of 4 rows: 40 steps of 64 images a second, not 4."""
    clock = iter(range(1000))
    monkeypatch.setattr("ganterm.run.recorder.time.perf_counter", lambda: float(next(clock)))
    with ganterm.Run("sized", root=tmp_path, images_per_step=64, flush_every=4) as run:
        for step in range(10, 81, 10):
            run.log(step, loss_d=1.0)
    directory = RunDir(tmp_path / "sized")
    rates = [row["img_per_s"] for row in read_jsonl(directory.metrics)]
    assert rates == [40 * 64 / 1.0] * 8
    assert read_status(directory)["images_per_step"] == 64


@pytest.mark.parametrize("bad", [-64, 2.5, True])
def test_images_per_step_must_be_a_whole_number(tmp_path: Path, bad: object):
    with pytest.raises(UserError, match="images_per_step must be a whole number"):
        ganterm.Run("bad", root=tmp_path, images_per_step=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()


def test_an_exception_in_the_loop_marks_the_run_failed_and_keeps_its_rows(tmp_path: Path):
    with pytest.raises(RuntimeError), ganterm.Run("broken", root=tmp_path) as run:
        run.log(1, loss_d=0.5)
        raise RuntimeError("out of memory")
    directory = RunDir(tmp_path / "broken")
    assert read_status(directory)["error"] == "RuntimeError: out of memory"
    assert read_jsonl(directory.metrics)[0]["loss_d"] == 0.5


def test_stop_from_a_viewer_reaches_the_loop(tmp_path: Path):
    with ganterm.Run("stoppable", root=tmp_path, flush_every=1) as run:
        run.log(1, loss_d=0.5)
        append_jsonl(run.dir.control, {"cmd": "stop", "id": "a"})
        run.log(2, loss_d=0.5)
        assert run.stop_requested
    assert read_status(run.dir)["state"] == "stopped"


def test_a_name_in_use_is_refused(tmp_path: Path):
    ganterm.Run("taken", root=tmp_path).close()
    with pytest.raises(UserError, match="already exists"):
        ganterm.Run("taken", root=tmp_path)


def test_a_collapsing_discriminator_raises_the_same_alert(tmp_path: Path):
    with ganterm.Run("overpowered", root=tmp_path) as run:
        for step in range(1, 301):
            run.log(step, d_x=0.999, d_g_z1=0.001, loss_d=0.002, loss_g=7.0)
    alerts = [e for e in read_jsonl(run.dir.events) if e["kind"] == "alert"]
    assert [a["check"] for a in alerts] == ["d_overpowering"]


async def test_the_dashboard_shows_a_user_loop_with_its_own_metric(tmp_path: Path):
    with ganterm.Run("watched", root=tmp_path, total=50) as run:
        for step in range(1, 51):
            run.log(step, loss_d=1.0, loss_g=1.0, sharpness=step / 50)
    app = Dashboard([run.dir], tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "FINISHED" in str(app.query_one("#header").render())
        assert "sharpness" in str(app.query_one("#plot-sharpness", MetricPlot).render())


def test_tensors_with_gradients_are_logged_as_numbers_without_warnings(tmp_path: Path):
    """Loss tensors straight from the graph, a tensor step and a tensor time: plain numbers, nothing printed."""
    weight = torch.ones((), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ganterm.Run("tensors", root=tmp_path, flush_every=4) as run:
            for step in range(1, 9):
                run.log(torch.tensor(step), loss_d=weight * step, loss_g=torch.tensor([2.0]), t_user=torch.tensor(1.5))
    rows = read_jsonl(run.dir.metrics)
    assert [row["step"] for row in rows] == list(range(1, 9))
    assert rows[2]["loss_d"] == 3.0 and rows[2]["loss_g"] == 2.0 and rows[2]["t_user"] == 1.5


def test_a_flush_reads_every_buffered_tensor_back_in_one_transfer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    transfers = []
    real_cpu = torch.Tensor.cpu

    def counting_cpu(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        transfers.append(tuple(tensor.shape))
        return real_cpu(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    with ganterm.Run("batched", root=tmp_path, flush_every=10) as run:
        for step in range(1, 11):
            run.log(step, loss_d=torch.tensor(0.5), loss_g=torch.tensor(0.7), d_x=torch.tensor(0.6))
        assert transfers == [(30,)]


async def test_the_dashboard_header_shows_a_loops_config_and_what_differs_from_the_compared_run(tmp_path: Path):
    for name, lr in (("fast", 1e-3), ("slow", 2e-4)):
        with ganterm.Run(name, root=tmp_path, config={"lr": lr, "batch_size": 64}) as run:
            run.log(1, loss_d=1.0)
    app = Dashboard([RunDir(tmp_path / "fast"), RunDir(tmp_path / "slow")], tmp_path)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot, app)
        header = str(app.query_one("#header").render())
        assert "differ: lr 0.001 / 0.0002" in header and "lr=0.001 batch_size=64" in header


def test_resume_needs_a_name_and_a_run_of_a_users_loop(tmp_path: Path, trained_run: RunDir):
    with pytest.raises(UserError, match="needs the name of the run to continue"):
        ganterm.Run(root=tmp_path, resume="allow")
    with pytest.raises(UserError, match="was trained by ganterm train; continue it with ganterm train --resume tiny"):
        ganterm.Run("tiny", root=trained_run.path.parent, resume=True)
    assert read_status(trained_run)["state"] == "finished"


def test_config_takes_a_dataclass_keeps_what_json_cannot_hold_as_its_repr_and_refuses_a_list(tmp_path: Path):
    import dataclasses
    import json

    @dataclasses.dataclass
    class Optim:
        lr: float = 2e-4
        betas: tuple[float, float] = (0.0, 0.99)

    @dataclasses.dataclass
    class Settings:
        optim: Optim = dataclasses.field(default_factory=Optim)
        device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
        seed: int | None = None

    with ganterm.Run("dataclass", root=tmp_path, config=Settings()) as run:
        run.log(1, loss_d=0.5)
    assert json.loads(run.dir.loop_config.read_text()) == {
        "optim": {"lr": 0.0002, "betas": [0.0, 0.99]},
        "device": "device(type='cpu')",
        "seed": None,
    }
    with pytest.raises(UserError, match=r"config must be a dict, a dataclass or an argparse Namespace, not list"):
        ganterm.Run("listed", root=tmp_path, config=[0.0002, 64])
    assert not (tmp_path / "listed").exists()


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        [0.5],
        {"a": 1},
        np.zeros(3),
        1j,
        b"x",
        torch.zeros(3),
        torch.tensor(1j),
        10**400,
        torch.tensor(1.0, device="meta"),
        Fraction(10**400),
        np.timedelta64(5, "s"),
    ],
    ids=[
        "str",
        "list",
        "dict",
        "array",
        "complex",
        "bytes",
        "tensor",
        "complex-tensor",
        "int-past-float",
        "meta-tensor",
        "fraction-past-float",
        "timedelta",
    ],
)
def test_a_value_that_is_no_number_is_refused_at_once_and_costs_no_other(tmp_path: Path, bad: object):
    """Refused by `log` itself, naming the key; the good values of its row and the rows buffered before stay."""
    with ganterm.Run("mixed", root=tmp_path, flush_every=10) as run:
        for step in range(1, 5):
            run.log(step, loss_d=0.25)
        with pytest.raises(UserError, match=r"^metric 'note' is "):
            run.log(5, loss_d=0.5, note=bad)
        for step in range(6, 11):
            run.log(step, loss_d=0.25)
    rows = read_jsonl(run.dir.metrics)
    assert [row["step"] for row in rows] == list(range(1, 11))
    assert rows[4] == {"step": 5, "t": rows[4]["t"], "loss_d": 0.5}
    assert GantermRun(run.dir).pinned_rows().skipped_note() is None


def test_values_that_are_unambiguously_numbers_are_written_as_numbers(tmp_path: Path):
    """Bools, numpy scalars and arrays of one element, 0-d tensors, and ints past 64 bits (as floats)."""
    with ganterm.Run("numbers", root=tmp_path, flush_every=1) as run:
        run.log(np.int64(3), flag=True, f=np.float32(0.25), i=np.int64(7), a=np.array([2.0]), z=torch.tensor(True))
        run.log(10, big=10**30, small=-(10**30), none=None)
    first, second = read_jsonl(run.dir.metrics)
    assert first == {"step": 3, "t": first["t"], "flag": 1, "f": 0.25, "i": 7, "a": 2.0, "z": 1.0}
    assert second == {"step": 10, "t": second["t"], "big": 1e30, "small": -1e30, "none": None}
    assert read_status(run.dir)["step"] == 10


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True, float("nan"), 2**64, None])
def test_a_step_that_is_no_whole_number_is_refused_at_once(tmp_path: Path, bad: object):
    with ganterm.Run("steps", root=tmp_path, flush_every=3) as run:
        run.log(1, loss_d=0.5)
        with pytest.raises(UserError, match="the step must be a whole number"):
            run.log(bad, loss_d=0.5)
        run.log(2, loss_d=0.5)
    assert [row["step"] for row in read_jsonl(run.dir.metrics)] == [1, 2]


def test_a_tensor_step_read_back_as_no_step_costs_only_its_own_row(tmp_path: Path):
    """A tensor is judged by its value only at the flush (reading it at `log` would be a device sync per step)."""
    with ganterm.Run("tensor-steps", root=tmp_path, flush_every=3) as run:
        run.log(torch.tensor(1), loss_d=0.5)
        run.log(torch.tensor(float("nan")), loss_d=0.5)
        run.log(torch.tensor(3), loss_d=0.5)
    assert [row["step"] for row in read_jsonl(run.dir.metrics)] == [1, 3]
    assert read_status(run.dir)["step"] == 3


@pytest.mark.parametrize("name", RESERVED_NAMES)
def test_a_reserved_name_is_refused_at_once_naming_them_all(tmp_path: Path, name: str):
    """`step` and `t` are the row's own; `run` is the exported tables' run column: none may be a metric's name."""
    with (
        ganterm.Run("reserved", root=tmp_path, flush_every=1) as run,
        pytest.raises(UserError, match=f"metric name '{name}' is reserved: step, t, run are"),
    ):
        run.log(5, loss_d=0.5, **{name: 7.0})
    (row,) = read_jsonl(run.dir.metrics)
    assert row["step"] == 5 and row["t"] != 7.0 and row["loss_d"] == 0.5 and "run" not in row


def test_img_per_s_is_the_runs_own_when_it_knows_its_batch(tmp_path: Path):
    with (
        ganterm.Run("rated", root=tmp_path, images_per_step=64, flush_every=1) as run,
        pytest.raises(UserError, match="'img_per_s' is computed by ganterm"),
    ):
        run.log(1, img_per_s=5.0, loss_d=0.5)
    assert read_jsonl(run.dir.metrics)[0]["img_per_s"] != 5.0
    with ganterm.Run("own-rate", root=tmp_path, flush_every=1) as run:
        run.log(1, img_per_s=5.0)
    assert read_jsonl(run.dir.metrics)[0]["img_per_s"] == 5.0


def test_a_huge_exception_message_stays_a_few_kb_in_what_watch_prints(tmp_path: Path):
    with pytest.raises(RuntimeError), ganterm.Run("loud", root=tmp_path) as run:
        run.log(1, loss_d=0.5)
        raise RuntimeError("begins " + "x" * 5_000_000 + " ends")
    result = CliRunner().invoke(cli_app, ["watch", str(run.dir.path), "--no-dashboard"], env={"COLUMNS": "200"})
    assert "begins" in result.output and "characters cut" in result.output and "ends" in result.output
    assert len(result.output) < 3 * TEXT_LIMIT


def test_two_runs_started_at_once_under_one_name_the_loser_gets_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rivals = a_rival_claims_between_check_and_create(monkeypatch, lambda name: ganterm.Run(name, root=tmp_path))
    with pytest.raises(UserError, match=r"^run 'same' already exists under .*; pick another name"):
        ganterm.Run("same", root=tmp_path)
    rivals[-1].close()
    assert read_status(RunDir(tmp_path / "same"))["state"] == "finished"


def test_two_unnamed_runs_started_at_once_get_a_name_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """At once: within the second the names are stamped with, held still here, however slowly the rival starts."""
    at_once = datetime.datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(layout, "datetime", SimpleNamespace(datetime=SimpleNamespace(now=lambda: at_once)))
    rivals = a_rival_claims_between_check_and_create(monkeypatch, lambda name: ganterm.Run(name, root=tmp_path))
    with ganterm.Run(root=tmp_path) as run:
        run.log(1, loss_d=0.5)
    rivals[-1].close()
    assert run.dir.name == f"{rivals[-1].dir.name}-2"
    assert read_jsonl(run.dir.metrics)[0]["loss_d"] == 0.5


@pytest.mark.parametrize(
    ("argument", "bad"),
    [("total", "many"), ("total", -1), ("flush_every", 0), ("flush_every", "10"), ("images_per_step", 2.5)],
)
def test_counts_given_to_run_are_whole_numbers(tmp_path: Path, argument: str, bad: object):
    with pytest.raises(UserError, match=f"^{argument} must be a whole number"):
        ganterm.Run("counted", root=tmp_path, **{argument: bad})
    assert not (tmp_path / "counted").exists()


@pytest.mark.parametrize(
    ("step", "images", "said"),
    [
        (-1, torch.zeros(4, 1, 8, 8), "the step must be a whole number"),
        ("5", torch.zeros(4, 1, 8, 8), "the step must be a whole number"),
        (5, np.zeros((4, 1, 8, 8)), r"images must be a tensor of N×C×H×W images .*; got ndarray"),
        (5, torch.zeros(8, 8), r"images must be a tensor .*; got Tensor of shape \(8, 8\)"),
    ],
)
def test_images_with_a_bad_step_or_no_image_batch_are_refused_in_one_sentence(
    tmp_path: Path, step: object, images: object, said: str
):
    with ganterm.Run("pictures", root=tmp_path) as run, pytest.raises(UserError, match=said):
        run.images(step, images)  # type: ignore[arg-type]
    assert run.dir.sample_files() == []


def test_a_callback_that_fails_on_a_viewers_command_refuses_it_and_training_goes_on(tmp_path: Path):
    """`ganterm snapshot` against a broken on_sample: the command is answered with why, the loop is not ended."""

    def broken_sample(step: int) -> None:
        raise RuntimeError("CUDA out of memory\nand more")

    with ganterm.Run("broken", root=tmp_path, flush_every=1, on_sample=broken_sample) as run:
        run.log(1, loss_d=0.5)
        append_jsonl(run.dir.control, {"cmd": "snapshot", "id": "s1"})
        run.log(2, loss_d=0.5)
        run.log(3, loss_d=0.5)
    (answer,) = [event for event in read_jsonl(run.dir.events) if event.get("ack") == "s1"]
    assert answer["refused"] == "on_sample failed: RuntimeError: CUDA out of memory"
    assert read_status(run.dir)["state"] == "finished" and read_status(run.dir)["step"] == 3


def test_resuming_rows_with_no_known_restart_point_asks_for_it_and_cuts_nothing(tmp_path: Path):
    """Restarting from step 0 would cut every row: without on_checkpoint's record the loop must say its step."""
    with ganterm.Run("mine", root=tmp_path) as run:
        for step in range(1, 11):
            run.log(step, loss_d=0.5)
    with pytest.raises(UserError, match=r"has rows up to step 10 .* resume=True, step=N"):
        ganterm.Run("mine", root=tmp_path, resume=True)
    assert len(read_jsonl(run.dir.metrics)) == 10
    with ganterm.Run("mine", root=tmp_path, resume=True, step=6) as again:
        assert again.start_step == 6
        again.log(7, loss_d=0.25)
    assert [row["step"] for row in read_jsonl(run.dir.metrics)] == [1, 2, 3, 4, 5, 6, 7]


def test_a_run_that_fails_to_start_lets_go_of_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A failure after the run is held (its log cannot be opened, say) must not leave it locked in this process."""
    from ganterm import api

    def unopenable(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(api, "LogFile", unopenable)
    with pytest.raises(PermissionError):
        ganterm.Run("held", root=tmp_path)
    monkeypatch.undo()
    with ganterm.Run("held", root=tmp_path, resume="allow", step=0) as run:  # not RunLocked
        run.log(1, loss_d=0.5)
    assert read_status(run.dir)["state"] == "finished"


def test_a_tensor_the_loop_changes_in_place_keeps_each_steps_value(tmp_path: Path):
    """An EMA or a counter updated in place after `log`: the rows not yet flushed keep what was logged."""
    ema = torch.zeros(())
    with ganterm.Run("ema", root=tmp_path, flush_every=10) as run:
        for step in range(1, 6):
            ema.mul_(0.5).add_(step)
            run.log(step, ema=ema)
    assert [row["ema"] for row in read_jsonl(run.dir.metrics)] == [1.0, 2.5, 4.25, 6.125, 8.0625]


def test_a_name_under_the_config_prefix_is_refused(tmp_path: Path):
    """A loop's config= becomes config.<key> columns of exported tables: a metric may not take such a name."""
    with ganterm.Run("prefixed", root=tmp_path, config={"lr": 0.1}) as run:
        with pytest.raises(UserError, match=r"metric name 'config.lr' is reserved: names starting 'config.'"):
            run.log(1, **{"config.lr": 2.0})
        run.log(2, lr_now=0.1)


def test_a_config_json_cannot_hold_as_it_is_is_kept_by_its_repr_and_a_self_holding_one_refused(tmp_path: Path):
    with ganterm.Run("wide", root=tmp_path, config={"n": 2**70, "s": "\ud800"}) as run:
        run.log(1, loss_d=0.5)
    assert GantermRun(run.dir).config() == {"n": str(2**70), "s": "'\\ud800'"}
    looped: dict = {}
    looped["me"] = looped
    with pytest.raises(UserError, match="config holds itself"):
        ganterm.Run("looped", root=tmp_path, config=looped)
    assert not (tmp_path / "looped").exists()


def test_an_exception_whose_text_fails_still_fails_the_run(tmp_path: Path):
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    with pytest.raises(Unprintable), ganterm.Run("odd", root=tmp_path) as run:
        run.log(1, loss_d=0.5)
        raise Unprintable()
    status = read_status(run.dir)
    assert status["state"] == "failed" and status["error"] == "Unprintable"


def test_resuming_a_run_that_ganterm_train_is_starting_is_refused(tmp_path: Path):
    """ganterm train writes config.toml first and its status later: in between the run is still not a loop's."""
    starting = RunDir(tmp_path / "gx")
    starting.path.mkdir()
    starting.metrics.touch()
    starting.config.write_text("[train]\nsteps = 10\n")
    with pytest.raises(UserError, match="was trained by ganterm train"):
        ganterm.Run("gx", root=tmp_path, resume=True, step=0)


def test_a_loop_says_its_loss_and_its_critic_is_read_as_one(tmp_path: Path):
    """A healthy WGAN-GP critic (real +3, fake -3) logged through Run(loss="wgan-gp"): recorded, and silent;
    the same numbers from a loop that says nothing read as probabilities, which alarm."""
    for name, loss in (("critic", {"loss": "wgan-gp"}), ("unsaid", {})):
        with ganterm.Run(name, root=tmp_path, **loss) as run:
            for step in range(1, 1001):
                wobble = 0.3 * ((step * 7919) % 13 / 13 - 0.5)
                run.log(step, loss_d=-6.0 + 0.3 + wobble, loss_g=3.0, d_x=3.0 + wobble, d_g_z1=-3.0 - wobble, gp=0.3)
    critic, unsaid = RunDir(tmp_path / "critic"), RunDir(tmp_path / "unsaid")
    assert read_status(critic)["loss"] == "wgan-gp" and read_status(unsaid)["loss"] == "probability"
    alerts = lambda run: [e["check"] for e in read_jsonl(run.events) if e["kind"] == "alert"]  # noqa: E731
    assert alerts(critic) == [] and "d_overpowering" in alerts(unsaid)


def test_a_loss_run_cannot_read_is_refused_in_one_sentence_naming_the_accepted_ones(tmp_path: Path):
    with pytest.raises(
        UserError, match=r"^loss must be a loss family or loss name \(probability, .*rpgan\), not 'wgan'$"
    ):
        ganterm.Run("bad", root=tmp_path, loss="wgan")
    assert not (tmp_path / "bad").exists()


def test_logging_to_a_finished_run_is_one_sentence(tmp_path: Path):
    run = ganterm.Run("done", root=tmp_path)
    run.log(1, loss_d=0.5)
    run.finish()
    with pytest.raises(UserError, match=r"run 'done' has ended .*resume=True"):
        run.log(2, loss_d=0.5)


def test_a_very_long_bad_name_is_said_short(tmp_path: Path):
    with pytest.raises(UserError) as said:
        ganterm.Run("x" * 100_000 + "/", root=tmp_path)
    assert len(str(said.value)) < 300
