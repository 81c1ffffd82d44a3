"""The commands on runs another tool writes (through the fake format): listed, exported, refused control at once."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from typer.testing import CliRunner

from ganterm.cli import app
from tests.dashboard_runs import make_run
from tests.foreign_runs import dcgan_records, fake_formats, write_log
from tests.test_notify import Receiver, receiver

__all__ = ["fake_formats", "receiver"]  # fixtures, used by name

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


def test_runs_reads_other_tools_runs_as_the_roles_file_it_is_given_says(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "logs" / "critic", dcgan_records(1, 30))
    roles = tmp_path / "roles.toml"
    roles.write_text('loss = "wgan-gp"\n')
    table = _invoke("runs", "--root", str(tmp_path / "logs"), "--roles", str(roles))
    assert table.exit_code == 0, table.output
    assert "critic(x)" in table.output and "D(x)" not in table.output  # the critic's own words head its columns


def test_export_writes_a_foreign_runs_rows_in_ganterms_names(tmp_path: Path, fake_formats: None):
    write_log(tmp_path / "tb", [{"config": {"lr": 0.0002}}, *dcgan_records(1, 20)])
    out = tmp_path / "tb.csv"
    result = _invoke("export", str(tmp_path / "tb"), "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and rows[0]["run"] == "tb" and rows[0]["step"] == "1"
    assert {"loss_d", "loss_g", "d_x", "d_g_z1", "config.lr"} <= set(rows[0]) and rows[0]["config.lr"] == "0.0002"


def _winning(first: int, last: int) -> list[dict]:
    """D near-certain of real and fake: a probability D overpowering G (an alert of the health checks)."""
    return [{"tag": tag, "step": step, "value": value} for step in range(first, last + 1)
            for tag, value in (("Loss_D", 0.05), ("Loss_G", 0.9), ("D(x)", 0.99), ("D_G_z1", 0.01))]  # fmt: skip


def test_watch_without_the_dashboard_prints_a_read_only_runs_progress_until_ctrl_c(
    tmp_path: Path, fake_formats: None, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
):
    import ganterm.progress

    folder = tmp_path / "tb"
    write_log(folder, _winning(1, 300))  # an alert over the history: said once, not pushed
    waits = 0

    def sleep(seconds: float) -> None:
        """Between polls once all is read (not the short waits while the history comes): the writer goes on
        with G's loss rising, then the user presses Ctrl-C."""
        nonlocal waits
        if seconds < 1.0:
            return
        waits += 1
        if waits == 1:
            write_log(folder, [{"tag": "Loss_G", "step": step, "value": 0.9 + step / 50} for step in range(301, 800)])
        if waits == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(ganterm.progress, "READ_ONLY_LINE_SECONDS", 0.0)  # a line at every new step
    monkeypatch.setattr(ganterm.progress, "time", SimpleNamespace(time=time.time, monotonic=time.monotonic,
                                                                  sleep=sleep))  # fmt: skip
    result = _invoke("watch", str(folder), "--no-dashboard", "--notify", receiver.url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "tb: watching it read-only (TensorBoard's writer writes it): it never finishes for ganterm, "
        "so the watch goes on until Ctrl-C"
    )
    assert lines[1] == "tb: live at step 300"
    assert lines[2].startswith("tb: step 300  loss_d 0.050  loss_g 0.900  D(x) 0.99  D(G(z)) 0.01")
    assert any(line.startswith("tb: 1 alert over its history, the last at step ") and "overpowering" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("tb: alert at step ") and "diverging" in line for line in lines)
    assert any(line.startswith("tb: step 799  ") for line in lines)
    assert lines[-1] == "tb: left at step 799; its writer goes on"
    for _ in range(100):
        if receiver.received:
            break
        time.sleep(0.05)
    assert [body["check"] for body, _ in receiver.received] == ["divergence"]


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


def test_watch_without_the_dashboard_says_the_state_of_a_run_that_has_no_steps_yet(
    tmp_path: Path, fake_formats: None, monkeypatch: pytest.MonkeyPatch
):
    import ganterm.progress

    folder = tmp_path / "sg"
    write_log(folder, [{"config": {"batch_size": 32}}])  # StyleGAN's options, before its first tick
    waits = 0

    def sleep(seconds: float) -> None:
        nonlocal waits
        waits += 1
        if waits == 2:
            write_log(folder, dcgan_records(1, 5))
        if waits == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(ganterm.progress, "time", SimpleNamespace(time=time.time, monotonic=time.monotonic,
                                                                  sleep=sleep))  # fmt: skip
    result = _invoke("watch", str(folder), "--no-dashboard")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "sg: live, no step yet",
        "sg: step 5  loss_d 1.266  loss_g 0.966  D(x) 0.63  D(G(z)) 0.43",
        "sg: left at step 5; its writer goes on",
    ]
