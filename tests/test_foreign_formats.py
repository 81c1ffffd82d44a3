"""The real formats through the public way in: files torch's SummaryWriter, tensorboardX and StyleGAN's loop
write, opened with `ganterm.open_run`, read in ganterm's names, with the loss family each one logged."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorboardX
from torch.utils.tensorboard import SummaryWriter

import ganterm
from ganterm.export import export_history
from ganterm.progress import ReadOnlyLines
from ganterm.sources import find_runs, history, tfevents
from tests.stylegan_folder import write_stylegan_folder

STEPS = 60


def _dcgan_tutorial_loop(writer: SummaryWriter | tensorboardX.SummaryWriter) -> None:
    """The names of PyTorch's DCGAN tutorial, D's outputs as probabilities, and a histogram."""
    for step in range(STEPS):
        writer.add_scalar("Loss_D", 1.0 + step / 100, step)
        writer.add_scalar("Loss_G", 2.0 - step / 100, step)
        writer.add_scalar("D(x)", 0.7, step)
        writer.add_scalar("D_G_z1", 0.3, step)
        writer.add_scalar("momentum", 0.5, step)
        if step % 20 == 0:
            writer.add_histogram("weights", np.arange(10.0), step)
    writer.close()


def test_summary_writer_runs_of_torch_and_tensorboardx_read_in_ganterm_names(tmp_path: Path):
    _dcgan_tutorial_loop(SummaryWriter(str(tmp_path / "logs" / "torch")))
    _dcgan_tutorial_loop(tensorboardX.SummaryWriter(str(tmp_path / "logs" / "tbx")))
    runs = find_runs(tmp_path / "logs")
    assert sorted(run.name for run in runs) == ["tbx", "torch"]
    for run in runs:
        assert run.kind == "tensorboard" and run.read_only and run.controls == ()
        history = run.history()
        assert history["step"].tolist() == list(range(STEPS))
        assert history["loss_d"][-1] == np.float32(1.0 + (STEPS - 1) / 100)  # Loss_D, read as D's loss
        assert set(history) == {"step", "t", "loss_d", "loss_g", "d_x", "d_g_z1", "momentum"}
        status = run.status()
        assert status["loss"] == "probability"  # D(x) in [0, 1]: the tutorial's sigmoid means
        assert status["skipped"] == {"histogram": 3}


def test_a_stylegan_folder_reads_as_stylegan_with_its_logits_not_as_probabilities(tmp_path: Path):
    folder = write_stylegan_folder(tmp_path / "00000-mnist", ticks=5).path
    SummaryWriter(str(folder)).close()  # StyleGAN2-ADA writes event files beside stats.jsonl, the same numbers
    run = ganterm.open_run(folder)
    assert run.kind == "stylegan"
    history = run.history()
    assert {"loss_d", "loss_g", "d_x", "d_g_z1"} <= set(history)  # Loss/D/loss ... Loss/scores/fake
    assert "Loss/r1_penalty" in history  # before its γ/2 weight: not ganterm's r1
    assert run.status()["loss"] == "logit"
    assert [step for step, _ in run.samples()] == sorted(step for step, _ in run.samples())
    assert run.samples()  # its fakes grids


def test_a_summary_writer_runs_wall_times_are_its_t_column_in_the_history_the_viewers_updates_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Read newest steps first, then the history in pieces: a step whose two events lie in two of them keeps the
    first one's time."""
    monkeypatch.setattr(tfevents, "NEWEST_FIRST_BYTES", 950)  # begins between a step's two events
    monkeypatch.setattr(history, "CHUNK_BYTES", 1_500)
    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(STEPS):
        writer.add_scalar("Loss_D", 1.0, step, walltime=1.7e9 + 2 * step)
        writer.add_scalar("Loss_G", 2.0, step, walltime=1.7e9 + 2 * step + 1)  # a moment later: the step keeps 2 * step
    writer.close()
    run = ganterm.open_run(tmp_path / "tb")
    wall_times = [1.7e9 + 2 * step for step in range(STEPS)]
    assert run.history()["t"].tolist() == wall_times
    assert run.rows()[3] == {"step": 3, "t": 1.7e9 + 6, "loss_d": 1.0, "loss_g": 2.0}
    reader, shown = run.follow(), []
    while True:
        update = reader.poll()
        for columns in (update.history, update.columns):
            if "t" in columns:
                shown += zip(*(part.tolist() for part in columns["t"]), strict=True)
        if not update.more:
            break
    reader.close()
    assert len(shown) == STEPS + 1  # the step that straddles where the newest-first read began, twice
    earliest = {step: min(time for at, time in shown if at == step) for step, _ in shown}
    assert sorted(earliest.items()) == list(zip(range(STEPS), wall_times, strict=True))
    export_history([run.pinned_rows()], "tensorboard", tmp_path / "out", lambda _: None)
    assert ganterm.open_run(tmp_path / "out" / "tb").history()["t"].tolist() == wall_times
    export_history([run.pinned_rows()], "csv", tmp_path / "out.csv", lambda _: None)
    with open(tmp_path / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["t"]) for row in rows] == wall_times


def test_the_plain_lines_of_a_run_of_tags_ganterm_has_no_role_for_show_its_numbers_not_its_wall_time(tmp_path: Path):
    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(1, 4):
        writer.add_scalar("accuracy", 0.5, step)
        writer.add_scalar("lr", 0.001, step)
    writer.close()
    said: list[str] = []
    lines = ReadOnlyLines("tb", said.append, 0.0)
    reader = ganterm.open_run(tmp_path / "tb").follow()
    lines.take(reader.poll(), lambda _: None)
    reader.close()
    assert said[-1] == "tb: step 3  accuracy 0.5  lr 0.001"


def test_the_plain_lines_take_a_history_whose_columns_are_empty(tmp_path: Path):
    """A purge_step restart can leave a tag of a history piece with no point; the lines wait for a step."""
    from ganterm.sources.follow import RunUpdate

    said: list[str] = []
    lines = ReadOnlyLines("tb", said.append, 0.0)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    lines.take(RunUpdate(history={"loss_d": empty}, more=True), lambda _: None)
    assert lines.step is None and said == []
    lines.take(RunUpdate(history={"loss_d": (np.array([7]), np.array([0.5]))}), lambda _: None)
    assert lines.step == 7
