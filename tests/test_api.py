"""A user's own training loop feeds the same run directory, alerts and dashboard."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import ganterm
from ganterm.dashboard.app import Dashboard
from ganterm.dashboard.plots import MetricPlot
from ganterm.errors import UserError
from ganterm.run.jsonl import append_jsonl, read_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status
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
