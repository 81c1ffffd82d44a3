"""The `ganterm` command as a user meets it: sample, export, timelapse, runs, a real train."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from ganterm.cli import app
from ganterm.cli import runs as runs_command
from ganterm.listing import age, run_summary, runs_table
from ganterm.run.jsonl import append_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import read_status, write_status
from tests.conftest import tiny_config, train_in_process

runner = CliRunner()
CELL = 28 + 2  # image plus grid padding


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def test_sample_writes_a_png_grid_of_the_requested_size(trained_run: RunDir, tmp_path: Path):
    out = tmp_path / "grid.png"
    result = _invoke("sample", str(trained_run.path), "-n", "16", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    with Image.open(out) as image:
        assert image.size == (4 * CELL + 2, 4 * CELL + 2)
    wide = tmp_path / "wide.png"
    assert _invoke("sample", str(trained_run.path), "-n", "16", "--nrow", "8", "--out", str(wide)).exit_code == 0
    with Image.open(wide) as image:
        assert image.size == (8 * CELL + 2, 2 * CELL + 2)


def test_sample_seeds_are_reproducible_and_distinct(trained_run: RunDir, tmp_path: Path):
    paths = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        paths[name] = tmp_path / f"{name}.png"
        assert _invoke("sample", str(trained_run.path), "--seed", seed, "--out", str(paths[name])).exit_code == 0
    assert paths["a"].read_bytes() == paths["b"].read_bytes() != paths["c"].read_bytes()


def test_sample_default_name_and_latent_walk(trained_run: RunDir, in_tmp: Path):
    result = _invoke("sample", str(trained_run.path), "-n", "8", "--nrow", "8", "--interpolate", "5", "--seed", "3")
    assert result.exit_code == 0, result.output
    written = in_tmp / "tiny-step8-seed3-to5.png"
    with Image.open(written) as image:
        assert image.size == (8 * CELL + 2, CELL + 2)


def test_sample_from_a_checkpoint_file_alone(trained_run: RunDir, tmp_path: Path):
    checkpoint = trained_run.checkpoints / "latest.safetensors"
    out = tmp_path / "alone.png"
    assert _invoke("sample", str(checkpoint), "-n", "4", "--out", str(out)).exit_code == 0
    assert out.exists()


def test_sample_mistakes_are_one_line_and_write_nothing(trained_run: RunDir, tmp_path: Path):
    result = _invoke("sample", str(trained_run.path), "--out", str(tmp_path / "grid.jpg"))
    assert result.exit_code == 1 and "must name a .png file" in result.output
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("not tensors")
    result = _invoke("sample", str(bogus), "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 1 and "is not a safetensors file" in result.output
    result = _invoke("sample", "no-such-run", "--root", str(tmp_path))
    assert result.exit_code == 1 and "no run named 'no-such-run'" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.safetensors"]


def test_export_writes_a_generator_for_plain_load_file(trained_run: RunDir, tmp_path: Path):
    out = tmp_path / "g.safetensors"
    result = _invoke("export", str(trained_run.path), "--out", str(out))
    assert result.exit_code == 0, result.output
    weights = load_file(str(out))
    assert "main.0.weight" in weights
    picture = tmp_path / "from-export.png"
    assert _invoke("sample", str(out), "-n", "4", "--out", str(picture)).exit_code == 0


def test_timelapse_animates_the_sample_grids(trained_run: RunDir, tmp_path: Path):
    out = tmp_path / "run.gif"
    assert _invoke("timelapse", str(trained_run.path), "--out", str(out)).exit_code == 0
    with Image.open(out) as gif:
        assert gif.n_frames == len(trained_run.sample_files()) == 2


def test_eval_reports_the_metrics_that_apply(trained_run: RunDir):
    result = runner.invoke(app, ["eval", str(trained_run.path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout.splitlines()[-1])
    assert list(measured) == ["ema", "raw"]  # the EMA generator first, then the raw one the papers measure
    for metrics in measured.values():
        assert set(metrics) == {"fd_classifier", "class_coverage", "class_kl", "classifier_confidence",
                                "precision", "recall"}  # fmt: skip
        assert 0 <= metrics["class_coverage"] <= 10 and metrics["fd_classifier"] > 0
    assert measured["ema"] != measured["raw"]
    table = _invoke("eval", str(trained_run.path))
    assert "class_coverage" in table.stdout and "step 8" in table.stdout
    header = next(line for line in table.stdout.splitlines() if "generator" in line)
    assert header.index("EMA generator") < header.index("raw generator")


def test_eval_of_a_toy_counts_modes(in_tmp: Path):
    run = RunDir(in_tmp / "runs" / "ring")
    assert train_in_process(run, tiny_config("train.steps=4", data="ring")) == 0
    result = _invoke("eval", "ring", "--json")
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)
    assert list(measured) == ["ema", "raw"]
    for metrics in measured.values():
        assert (
            {"modes_covered", "modes_covered_20", "modes_total", "hq_share"}
            <= set(metrics)
            <= {"modes_covered", "modes_covered_20", "modes_total", "hq_share", "mode_kl"}
        )  # mode_kl only when some sample is near a mode
        assert metrics["modes_total"] == 8


def test_eval_of_a_run_without_ema_reports_the_raw_generator(in_tmp: Path):
    run = RunDir(in_tmp / "runs" / "plain")
    assert train_in_process(run, tiny_config("train.steps=4", "train.ema=0", data="ring")) == 0
    assert list(json.loads(_invoke("eval", "plain", "--json").stdout)) == ["raw"]


def test_eval_of_stacked_mnist_counts_digit_triples(in_tmp: Path, monkeypatch: pytest.MonkeyPatch):
    """Each channel read by the MNIST classifier; 2,000 samples here, not the papers' 26,000, to be quick."""
    monkeypatch.setattr("ganterm.training.quality.STACKED_SAMPLES", 2000)
    run = RunDir(in_tmp / "runs" / "stacked")
    assert train_in_process(run, tiny_config("train.steps=4", data="stacked-mnist")) == 0
    result = _invoke("eval", "stacked", "--json")
    assert result.exit_code == 0, result.output
    for metrics in json.loads(result.stdout.splitlines()[-1]).values():
        assert set(metrics) == {"modes_covered", "modes_total", "mode_kl", "class_kl_red", "class_kl_green",
                                "class_kl_blue", "classifier_confidence"}  # fmt: skip
        assert metrics["modes_total"] == 1000 and 1 <= metrics["modes_covered"] <= 1000


def test_runs_lists_state_and_latest_numbers(trained_run: RunDir):
    result = runner.invoke(app, ["runs", "--root", str(trained_run.path.parent)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "tiny" in line)
    assert "finished" in line and "8/8" in line and "cpu" in line


def test_runs_shows_the_last_losses_when_a_quality_row_comes_last(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "measured")
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 60, "total": 60, "started": 0, "device": "cpu"})
    append_jsonl(run.metrics, {"step": 60, "t": 1.0, "loss_d": 0.988, "loss_g": 0.961, "d_x": 0.69, "d_g_z1": 0.41})
    append_jsonl(run.metrics, {"step": 60, "t": 1.1, "fd_classifier": 1462.7, "class_kl": 2.3})
    result = runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")], env={"COLUMNS": "160"})
    line = next(line for line in result.output.splitlines() if "measured" in line)
    assert "0.988" in line and "0.961" in line and "0.69" in line


def test_runs_shows_each_statistics_newest_value_when_some_are_logged_every_few_steps(tmp_path: Path):
    """A WGAN logs loss_g on every 5th step only: the table and --json show its newest value, not a dash."""
    run = RunDir(tmp_path / "runs" / "wgan")
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 2003, "total": 2003, "started": 0, "device": "cpu"})
    with open(run.metrics, "ab") as handle:
        for step in range(1, 2004):
            row = {"step": step, "t": float(step), "loss_d": -0.5, "d_x": 0.7, "d_g_z1": 0.3, "img_per_s": 900.0}
            handle.write(json.dumps(row | ({"loss_g": step / 10_000} if step % 5 == 0 else {})).encode() + b"\n")
    root = ["--root", str(tmp_path / "runs")]
    table = runner.invoke(app, ["runs", *root], env={"COLUMNS": "160"}).output
    line = next(line for line in table.splitlines() if "wgan" in line)
    assert "0.200" in line and "-0.500" in line, table  # loss_g of step 2000
    (record,) = json.loads(runner.invoke(app, ["runs", "--json", *root]).output)
    assert record["statistics"]["loss_g"] == 0.2 and record["statistics"]["loss_d"] == -0.5


def test_runs_reads_a_long_runs_metrics_back_only_so_far(tmp_path: Path):
    """A statistic last logged long ago (here: 30,000 rows, over a megabyte, back) is a dash; the file is not
    read whole for it, which would take seconds a run on a long run's hundreds of megabytes."""
    run = RunDir(tmp_path / "runs" / "long")
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 30_000, "total": 30_000, "started": 0, "device": "cpu"})
    rows = [{"step": 0, "t": 0.0, "img_per_s": 5.0}]
    rows += [{"step": step, "t": float(step), "loss_d": 0.5} for step in range(1, 30_001)]
    run.metrics.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows))
    (record,) = json.loads(runner.invoke(app, ["runs", "--json", "--root", str(tmp_path / "runs")]).output)
    assert record["statistics"] == {"loss_d": 0.5}


@pytest.mark.parametrize(("columns", "hidden"), [(80, "D(G(z)), img/s, age, device"), (56, "7 columns")])
def test_runs_in_a_narrow_terminal_leaves_columns_out_whole(
    tmp_path: Path, columns: int, hidden: str, monkeypatch: pytest.MonkeyPatch
):
    # a terminal of that width: the command's console as rich makes it for one (the module's own console took
    # its size from the test process's environment, which other tests in that process may have left changed)
    monkeypatch.setattr(
        runs_command, "console", Console(force_terminal=True, width=columns, soft_wrap=True, color_system=None)
    )
    run = RunDir(tmp_path / "runs" / "mnist5k-20261124-212736")  # a default run's name
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 3500, "total": 3500, "started": 0, "device": "cpu"})
    append_jsonl(run.metrics, {"step": 3500, "t": 1.0, "loss_d": 1.336, "loss_g": 0.944, "d_x": 0.5, "d_g_z1": 0.47})
    result = runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    line = next(line for line in result.output.splitlines() if run.name in line)
    assert "finished" in line and "3500/3500" in line and "…" not in line, result.output
    assert f"{hidden} left out: too narrow a terminal" in result.output, result.output
    assert max(len(line) for line in result.output.splitlines()[1:]) <= columns  # all but the title's path


def test_runs_piped_shows_every_column_and_json_and_csv_hold_every_run(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "mnist5k-20261124-212736")
    run.path.mkdir(parents=True)
    status = {"state": "finished", "step": 3500, "total": 3500, "started": 5.0, "device": "cpu", "world_size": 2}
    write_status(run, {**status, "heartbeat": 9.0})
    append_jsonl(run.metrics, {"step": 3500, "t": 1.0, "loss_d": 1.336, "loss_g": 0.944, "d_x": 0.5, "d_g_z1": 0.47})
    root = ["--root", str(tmp_path / "runs")]
    piped = runner.invoke(app, ["runs", *root], env={"COLUMNS": "40"})
    assert "left out" not in piped.output and "D(G(z))" in piped.output and "device" in piped.output
    records = json.loads(runner.invoke(app, ["runs", "--json", *root]).output)
    assert records == [{
        "name": run.name, "state": "finished", "step": 3500, "total": 3500,
        "statistics": {"loss_d": 1.336, "loss_g": 0.944, "d_x": 0.5, "d_g_z1": 0.47},
        "device": "cpu", "world_size": 2, "loss": "probability", "started": 5.0, "heartbeat": 9.0,
        "path": str(run.path.resolve()), "config": {}, "kind": "ganterm",
    }]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["runs", "--csv", *root]).output)))
    assert len(rows) == 1 and rows[0]["name"] == run.name and rows[0]["loss_d"] == "1.336"
    assert rows[0]["world_size"] == "2" and rows[0]["d_g_z1"] == "0.47" and rows[0]["loss"] == "probability"


def test_runs_heads_d_columns_in_the_words_of_the_runs_loss_family(tmp_path: Path):
    """A critic's scores under critic(x) with three digits; runs of two families get a loss column instead."""
    root = tmp_path / "runs"
    for name, loss, d_x in (("wgan", "wgan-gp", 3.1416), ("dcgan", None, 0.5)):
        run = RunDir(root / name)
        run.path.mkdir(parents=True)
        write_status(
            run, {"state": "finished", "step": 9, "total": 9, "started": 5.0, **({"loss": loss} if loss else {})}
        )
        append_jsonl(run.metrics, {"step": 9, "t": 1.0, "loss_d": -6.0, "loss_g": 3.0, "d_x": d_x, "d_g_z1": -2.9})
        if name == "wgan":
            alone = runner.invoke(app, ["runs", "--root", str(root)], env={"COLUMNS": "200"}).output
            assert "critic(x)" in alone and "critic(G(z))" in alone and "3.142" in alone and "D(x)" not in alone
    both = runner.invoke(app, ["runs", "--root", str(root)], env={"COLUMNS": "200"}).output
    assert "critic(x)" not in both and "D(x)" in both
    cells = {line.split("│")[1].strip(): line.split("│")[4].strip() for line in both.splitlines() if "9/9" in line}
    assert cells == {"wgan": "critic", "dcgan": "probability"}, both


def test_runs_without_any_says_how_to_start_one(tmp_path: Path):
    result = runner.invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    assert result.exit_code == 0
    assert result.output.strip() == f"no runs in {tmp_path / 'runs'}/ yet; start one with: ganterm train"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(-2.0, "0s"), (0.0, "0s"), (59.9, "59s"), (60.0, "1m"), (3599.0, "59m"), (3600.0, "1h"), (86399.0, "23h"),
     (86400.0, "1d"), (200000.0, "2d")],
)  # fmt: skip
def test_runs_ages_read_in_the_largest_whole_unit(seconds: float, said: str):
    """A run started a moment "in the future" (clocks apart by a little) is 0s old, not -2s."""
    assert age(seconds) == said


def test_runs_row_cells_round_each_number_to_its_column_and_name_the_device_short(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "gpu")
    run.path.mkdir(parents=True)
    # the status is newer than the last row, which is logged every few steps only
    write_status(run, {"state": "finished", "step": 1203, "total": 3500, "started": 1000.0,
                       "device": "cuda:0 (NVIDIA H100 80GB HBM3)"})  # fmt: skip
    append_jsonl(
        run.metrics,
        {"step": 1200, "t": 1.0, "loss_d": 1.2346, "loss_g": 0.5, "d_x": 0.456, "d_g_z1": 0.123, "img_per_s": 4567.8},
    )
    assert run_summary(run, now=1000.0 + 2 * 3600 + 59) == {
        "name": "gpu", "state": "finished", "step": "1203/3500", "loss_d": "1.235", "loss_g": "0.500",
        "d_x": "0.46", "d_g_z": "0.12", "img_per_s": "4568", "age": "2h", "device": "cuda:0",
        "config": "-", "loss": "probability",
    }  # fmt: skip


def test_runs_row_of_a_users_own_loop_names_its_device_in_full(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "mine")
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 5, "device": "your training loop"})  # as ganterm.Run says
    assert run_summary(run, now=0.0)["device"] == "your training loop"


def test_runs_of_another_tool_or_with_nothing_logged_yet_read_as_external_and_unknown(tmp_path: Path):
    """A folder with rows but no status (another tool wrote it) and one with only its config, in all three outputs."""
    external = RunDir(tmp_path / "runs" / "theirs")
    external.path.mkdir(parents=True)
    append_jsonl(external.metrics, {"step": 7, "t": 1.0, "accuracy": 0.9})  # no losses in any row
    empty = RunDir(tmp_path / "runs" / "empty")
    empty.path.mkdir(parents=True)
    empty.config.write_text("", encoding="utf-8")
    root = ["--root", str(tmp_path / "runs")]
    records = {record["name"]: record for record in json.loads(runner.invoke(app, ["runs", "--json", *root]).output)}
    assert records["theirs"] == {
        "name": "theirs", "state": "external", "step": 7, "total": None, "statistics": {"accuracy": 0.9},
        "device": None, "world_size": 1, "started": external.path.stat().st_mtime, "heartbeat": None,
        "path": str(external.path.resolve()), "config": {}, "loss": "probability", "kind": "ganterm",
    }  # fmt: skip
    assert (records["empty"]["state"], records["empty"]["step"], records["empty"]["statistics"]) == ("unknown", 0, {})
    summary = run_summary(external, now=external.path.stat().st_mtime + 5)
    assert (summary["state"], summary["step"], summary["loss_d"], summary["age"], summary["device"]) == (
        "external",
        "7",
        "-",
        "5s",
        "-",
    )


def test_runs_a_folder_removed_while_listing_reads_as_unknown_not_as_a_crash(tmp_path: Path):
    summary = run_summary(RunDir(tmp_path / "runs" / "gone"), now=100.0)
    assert (summary["state"], summary["step"], summary["age"]) == ("unknown", "0", "0s")


def _rendered(table: object, width: int, colour: bool = False) -> list[str]:
    """What a terminal `width` columns wide shows of `table`, with its colours as escape codes when asked."""
    out = io.StringIO()
    terminal = {"force_terminal": True, "color_system": "standard", "no_color": False} if colour else {}
    Console(file=out, width=width, **terminal).print(table)  # no_color: whatever NO_COLOR the tests run under
    return [line.rstrip() for line in out.getvalue().splitlines()]


@pytest.fixture
def one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """runs/tiny, finished, listed by the relative root `runs` so the title is as short as a user's."""
    monkeypatch.chdir(tmp_path)
    run = RunDir(Path("runs") / "tiny")
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 3500, "total": 3500, "started": 0, "device": "cpu"})
    append_jsonl(run.metrics, {"step": 3500, "t": 1.0, "loss_d": 1.336, "loss_g": 0.944, "d_x": 0.5, "d_g_z1": 0.47})
    return Path("runs")


def test_runs_table_uses_the_whole_terminal_before_leaving_a_column_out(one_run: Path):
    widest = max(len(line) for line in _rendered(runs_table(one_run, 500), 500))
    assert "device" in _rendered(runs_table(one_run, widest), widest)[2]  # the header row, every column
    narrower = _rendered(runs_table(one_run, widest - 1), widest - 1)
    assert "device" not in narrower[2] and narrower[-1] == "device left out: too narrow a terminal"
    assert max(len(line) for line in narrower) <= widest - 1


def test_runs_table_has_its_title_and_caption_on_the_left_and_numbers_on_the_right(one_run: Path):
    lines = _rendered(runs_table(one_run, 70), 70)
    assert lines[0] == "runs in runs/" and lines[-1].startswith("img/s, age, device left out")
    row = next(line for line in lines if "tiny" in line)
    assert "│  1.336 │" in row and "│ 3500/3500 │" in row  # right-aligned under the wider headers


def test_runs_table_colours_only_the_state_by_what_it_says(one_run: Path):
    row = next(line for line in _rendered(runs_table(one_run, 200), 200, colour=True) if "tiny" in line)
    assert "\x1b[34mfinished" in row  # blue, as STATE_STYLE says
    assert row.count("\x1b[") == 2  # the state's colour and its reset; the name and numbers plain


@pytest.mark.parametrize(("columns", "last_shown"), [(40, "step"), (60, "step"), (80, "loss_g")])
def test_runs_table_cuts_a_long_name_on_one_line_and_keeps_state_and_step_whole(
    tmp_path: Path, columns: int, last_shown: str
):
    """The name gives way: cut to what the columns left leave, to the terminal's last cell, and counted as 30
    cells when columns are chosen (a 63-character name would leave out every number at 80)."""
    run = RunDir(tmp_path / "runs" / ("a-very-long-run-name-" * 3))
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 3500, "total": 3500, "started": 0, "device": "cpu"})
    lines = _rendered(runs_table(tmp_path / "runs", columns), columns)
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 1 and "a-very-long" in rows[0] and len(rows[0]) == columns, lines
    assert "… │ finished │ 3500/3500 │" in rows[0], lines
    header = next(line for line in lines if line.startswith("┃"))
    assert header.split("┃")[-2].strip() == last_shown, lines  # the last column shown


@pytest.mark.parametrize("args", [["--help"], ["runs"], ["train", "--dry-run"]])
def test_light_commands_never_import_torch(args: list[str], in_tmp: Path):
    probe = (
        "import sys\nfrom ganterm.cli import app\n"
        f"try:\n    app({args!r}, prog_name='ganterm')\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip().endswith("False")


def test_train_end_to_end_in_a_real_worker(in_tmp: Path):
    """`ganterm train` without a terminal: log lines, exit 0, a complete run directory."""
    command = [
        sys.executable,
        "-m",
        "ganterm",
        "train",
        "--steps",
        "6",
        "--name",
        "e2e",
        "--set",
        "model.width=8",
        "--set",
        "train.batch_size=16",
        "--set",
        "log.every=2",
    ]
    environment = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "e2e: finished at step 6/6" in result.stdout
    assert "e2e: step 6/6 (100%)  loss_d" in result.stdout
    run = RunDir(in_tmp / "runs" / "e2e")
    assert read_status(run)["state"] == "finished"
    assert (run.checkpoints / "latest.safetensors").exists() and run.sample_path(6).exists()
    assert "model.width" not in run.config.read_text() and "width = 8" in run.config.read_text()
