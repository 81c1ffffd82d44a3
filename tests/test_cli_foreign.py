"""The commands on runs another tool writes (through the fake format): listed, exported, refused control at once."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from ganterm.cli import app
from tests.dashboard_runs import make_run
from tests.foreign_runs import dcgan_records, fake_formats, write_log

__all__ = ["fake_formats"]  # the fixture, used by name

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("command", ["pause", "unpause", "stop", "checkpoint", "snapshot"])
def test_a_control_command_on_a_read_only_run_answers_at_once_why_not(tmp_path: Path, fake_formats: None,
                                                                       command: str):  # fmt: skip
    write_log(tmp_path / "tb", dcgan_records(1, 3))
    started = time.monotonic()
    result = _invoke(command, str(tmp_path / "tb"))
    assert result.exit_code == 1 and time.monotonic() - started < 5  # no wait for an answer that cannot come
    assert result.output.strip() == (
        "error: tb is read-only: TensorBoard's writer writes it, and ganterm only watches it; "
        f"{command} cannot reach it"
    )
    assert not (tmp_path / "tb" / "control.jsonl").exists()


def test_runs_lists_the_runs_under_a_logdir_beside_ganterms(tmp_path: Path, fake_formats: None):
    make_run(tmp_path / "logs", "mine", "finished")
    write_log(tmp_path / "logs" / "gan" / "seed1", dcgan_records(1, 30))
    result = _invoke("runs", "--root", str(tmp_path / "logs"), "--json")
    assert result.exit_code == 0, result.output
    records = {record["name"]: record for record in json.loads(result.output)}
    assert records["mine"]["kind"] == "ganterm" and records["gan/seed1"]["kind"] == "tensorboard"
    assert records["gan/seed1"]["state"] == "live" and records["gan/seed1"]["step"] == 30
    assert records["gan/seed1"]["loss"] == "probability" and set(records["gan/seed1"]["statistics"]) == {
        "loss_d", "loss_g", "d_x", "d_g_z1"}  # fmt: skip
    table = _invoke("runs", "--root", str(tmp_path / "logs")).output
    assert "gan/seed1" in table and "LIVE" in table.upper() and "mine" in table


def test_export_writes_a_foreign_runs_rows_in_ganterms_names(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", [{"config": {"lr": 0.0002}}, *dcgan_records(1, 20)])
    out = tmp_path / "tb.csv"
    result = _invoke("export", str(tmp_path / "tb"), "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and rows[0]["run"] == "tb" and rows[0]["step"] == "1"
    assert {"loss_d", "loss_g", "d_x", "d_g_z1", "config.lr"} <= set(rows[0]) and rows[0]["config.lr"] == "0.0002"


def test_watch_shows_a_read_only_run_only_in_the_dashboard(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", dcgan_records(1, 3))
    result = _invoke("watch", str(tmp_path / "tb"), "--no-dashboard")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: tb is written by another tool and shows only in the dashboard; "
        "watch it from a terminal, without --no-dashboard"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--notify", "ntfy.sh/x"], "error: --notify 'ntfy.sh/…' is not an http:// or https:// URL\n"),
        (["--roles", "nope.toml"], "error: roles file 'nope.toml' does not exist"),
    ],
)
def test_watch_refuses_a_bad_notify_url_or_roles_file_in_one_sentence(tmp_path: Path, fake_formats: None,
                                                                       args: list[str], says: str):  # fmt: skip
    write_log(tmp_path / "tb", dcgan_records(1, 3))
    result = _invoke("watch", str(tmp_path / "tb"), *args)
    assert result.exit_code != 0 and result.output.startswith(says) and len(result.output.strip().splitlines()) == 1


def test_timelapse_animates_a_foreign_runs_images(tmp_path: Path, fake_formats: None):
    folder = tmp_path / "sg"
    folder.mkdir()
    for kimg in (0, 40, 80):
        Image.new("RGB", (16, 16), (kimg * 3, 90, 90)).save(folder / f"fakes{kimg:06d}.png")
    write_log(folder, [{"tag": "fakes", "step": kimg, "image": str(folder / f"fakes{kimg:06d}.png")}
                       for kimg in (0, 40, 80)])  # fmt: skip
    out = tmp_path / "sg.gif"
    result = _invoke("timelapse", str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 3


def test_serve_gives_each_tab_the_runs_and_the_roles_file_and_serves_their_images(tmp_path: Path,
                                                                                   fake_formats: None):  # fmt: skip
    from ganterm.serve import _served_grids, watch_command
    from ganterm.sources import open_run

    folder = tmp_path / "sg"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "fakes000040.png")
    write_log(folder, [{"tag": "fakes", "step": 40, "image": str(folder / "fakes000040.png")}])
    roles = tmp_path / "roles.toml"
    roles.write_text('loss = "wgan-gp"\n')
    run = open_run(folder, roles=roles)
    argv = watch_command([run], tmp_path, roles)
    assert argv[-3:] == ["--roles", str(roles.resolve()), str(folder.resolve())]
    assert _served_grids(run) == [folder / "fakes000040.png"]


def test_watch_hands_the_dashboard_the_logdir_to_look_in_for_new_runs(tmp_path: Path, fake_formats: None,
                                                                      monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    import ganterm.cli.training

    write_log(tmp_path / "logs" / "exp1", dcgan_records(1, 3))
    attached: dict = {}
    monkeypatch.setattr(ganterm.cli.training, "_attach", lambda runs, root, **options: attached.update(options))
    result = _invoke("watch", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    new_runs = attached["new_runs"]
    assert new_runs.folders == [tmp_path / "logs"] and new_runs.known == {(tmp_path / "logs" / "exp1").resolve()}


def test_serve_gives_each_tab_a_logdir_as_the_folder_so_its_viewer_finds_new_runs_too(tmp_path: Path,
                                                                                       fake_formats: None):  # fmt: skip
    from ganterm.serve import watch_command
    from ganterm.sources import open_runs
    from ganterm.sources.new_runs import logdirs

    write_log(tmp_path / "logs" / "exp1", dcgan_records(1, 3))
    write_log(tmp_path / "logs" / "exp2", dcgan_records(1, 3))
    write_log(tmp_path / "tb", dcgan_records(1, 3))
    arguments = [str(tmp_path / "tb"), str(tmp_path / "logs")]
    argv = watch_command(open_runs(arguments), tmp_path, logdirs=logdirs(arguments[1:]))
    assert argv[-2:] == [str((tmp_path / "tb").resolve()), str((tmp_path / "logs").resolve())]
