"""User input a hostile tester types: huge counts, names with brackets, odd --out targets, bad files.

Each mistake is one sentence naming the input and what would be accepted, a non-zero exit, no
traceback and nothing half-written (issue 12, items 11, 12, 14, 17, 18).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganterm import config as config_module
from ganterm.cli import app
from ganterm.errors import ConfigError, UserError
from ganterm.run.jsonl import append_jsonl
from ganterm.run.layout import RunDir
from ganterm.run.status import write_status

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def _one_sentence(result, *fragments: str) -> None:
    """A user's mistake: non-zero exit, one line of output holding every fragment, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


# ----- item 11: counts are bounded ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--steps", "100000000000000000000"],
        ["--set", "train.steps=1e20"],
        ["--set", "checkpoint.every=1e20"],
        ["--set", "log.every=99999999999999999999"],
        ["--epochs", "1e30"],
    ],
)
def test_huge_counts_are_refused_in_one_sentence(args: list[str], in_tmp: Path):
    result = _invoke("train", *args, "--dry-run")
    _one_sentence(result, "must be <=")
    assert not (in_tmp / "runs").exists()


def test_epochs_that_resolve_to_too_many_steps_are_refused():
    config = config_module.load_config(None, ["train.epochs=1000000", "train.batch_size=1"])
    with pytest.raises(ConfigError, match="give fewer epochs"):
        config_module.resolve_steps(config, 10**9)
    assert config_module.resolve_steps(config, 1000) == 10**9


# ----- item 14: user text is never markup ---------------------------------------------------------


@pytest.mark.parametrize("name", ["exp[lr=1e-3]", "../elsewhere", ".hidden", "a b", "", "[/]", "x" * 129])
def test_unsafe_run_names_are_refused_with_the_rule(name: str, in_tmp: Path):
    result = _invoke("train", "--name", name, "--dry-run")
    _one_sentence(result, f"--name {name!r} is not a valid run name", "letters, digits, '.', '_' and '-'")
    assert not (in_tmp / "runs").exists()


def test_safe_run_names_pass(in_tmp: Path):
    for name in ("exp.lr-1e-3_b", "mnist5k-20261124-212736", "A1"):
        assert _invoke("train", "--name", name, "--dry-run").exit_code == 0


def test_own_loop_run_names_follow_the_same_rule(tmp_path: Path):
    from ganterm import Run

    for name in ("exp[lr=1e-3]", "../escape", ".dot"):
        with pytest.raises(UserError, match="is not a valid run name"):
            Run(name, root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_brackets_in_an_argument_are_printed_as_typed(tmp_path: Path):
    result = _invoke("watch", "[/]", "--root", str(tmp_path))
    _one_sentence(result, "no run named '[/]'")
    result = _invoke("stop", "[bold]x[/bold]", "--root", str(tmp_path))
    _one_sentence(result, "no run named '[bold]x[/bold]'")


def test_a_config_error_keeps_its_brackets(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("train = 5\n")
    result = _invoke("train", str(path), "--dry-run")
    _one_sentence(result, "'train' must be a [section] table, not a value")


def test_runs_lists_a_bracketed_folder_by_its_name(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "old[lr=1e-3]")  # made by hand or by an older ganterm
    run.path.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": 5, "total": 5, "started": 0, "device": "cpu"})
    append_jsonl(run.metrics, {"step": 5, "t": 1.0, "loss_d": 1.0})
    result = _invoke("runs", "--root", str(tmp_path / "runs"))
    assert result.exit_code == 0 and "old[lr=1e-3]" in result.output, result.output
    result = _invoke("watch", str(run.path), "--no-dashboard")
    assert result.exit_code == 0 and "old[lr=1e-3]: finished at step 5/5" in result.output, result.output


# ----- item 17: --out writes only a new path or a regular file -----------------------------------


def _odd_targets(tmp_path: Path, suffix: str) -> dict[str, tuple[Path, str]]:
    """Things a rename would destroy: a folder, a FIFO, a device node (where we may make one), links to them."""
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    fifo = tmp_path / f"fifo{suffix}"
    os.mkfifo(fifo)
    targets = {"folder": (folder, "is a folder"), "fifo": (fifo, "is a pipe")}
    device = tmp_path / f"full{suffix}"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers
        targets["device"] = (device, "is a device")
    except OSError:
        pass  # not root, or no CAP_MKNOD: the FIFO stands in for it
    for name, (path, said) in list(targets.items()):
        link = tmp_path / f"link-to-{name}{suffix}"
        link.symlink_to(path)
        targets[f"link-to-{name}"] = (link, said)
    return targets


def _modes(tmp_path: Path) -> dict[str, int]:
    return {p.name: p.lstat().st_mode for p in sorted(tmp_path.iterdir())}


@pytest.mark.parametrize(("command", "suffix"), [("export", ".safetensors"), ("sample", ".png")])
def test_out_refuses_anything_but_a_regular_file_or_a_new_path(
    command: str, suffix: str, trained_run: RunDir, tmp_path: Path
):
    targets = _odd_targets(tmp_path, suffix)
    before = _modes(tmp_path)
    for path, said in targets.values():
        result = _invoke(command, str(trained_run.path), "--out", str(path))
        _one_sentence(result, f"--out {str(path)!r}", said, "give a new path or a regular file to replace")
    assert _modes(tmp_path) == before  # nothing replaced, no temp file left


def test_out_replaces_a_regular_file_and_writes_through_a_link(trained_run: RunDir, tmp_path: Path):
    old = tmp_path / "old.safetensors"
    old.write_text("old contents")
    assert _invoke("export", str(trained_run.path), "--out", str(old)).exit_code == 0
    assert old.read_bytes() != b"old contents" and old.stat().st_size > 1000
    real, link = tmp_path / "real.png", tmp_path / "link.png"
    real.write_text("old")
    link.symlink_to(real)
    assert _invoke("sample", str(trained_run.path), "-n", "4", "--out", str(link)).exit_code == 0
    assert link.is_symlink() and real.read_bytes()[:4] == b"\x89PNG"


def test_timelapse_out_refuses_a_folder(tmp_path: Path):
    run = _run_with_grids(tmp_path / "runs" / "grids", 3)
    folder = tmp_path / "out.gif"
    folder.mkdir()
    result = _invoke("timelapse", str(run.path), "--out", str(folder))
    _one_sentence(result, f"--out {str(folder)!r} is a folder")
    assert folder.is_dir() and not list(folder.iterdir())


# ----- item 18: a truncated frame costs its frame, not the GIF -----------------------------------


def _run_with_grids(path: Path, count: int) -> RunDir:
    from PIL import Image

    run = RunDir(path)
    run.samples.mkdir(parents=True)
    write_status(run, {"state": "finished", "step": count, "total": count, "started": 0, "device": "cpu"})
    for step in range(1, count + 1):
        Image.new("RGB", (32, 32), (step * 40, 0, 0)).save(run.sample_path(step))
    return run


def test_timelapse_skips_unreadable_frames_and_says_how_many(tmp_path: Path):
    from PIL import Image

    run = _run_with_grids(tmp_path / "runs" / "grids", 4)
    whole = run.sample_path(2).read_bytes()
    run.sample_path(2).write_bytes(whole[: len(whole) // 2])  # cut short, as by a full disk
    run.sample_path(3).write_bytes(b"not a picture")
    out = tmp_path / "x.gif"
    result = _invoke("timelapse", str(run.path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 frames; 2 unreadable sample grids left out)" in result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 2


def test_timelapse_with_no_readable_frame_is_one_sentence(tmp_path: Path):
    run = _run_with_grids(tmp_path / "runs" / "grids", 2)
    for _, path in run.sample_steps():
        path.write_bytes(b"")
    out = tmp_path / "x.gif"
    result = _invoke("timelapse", str(run.path), "--out", str(out))
    _one_sentence(result, "none of the 2 sample grids")
    assert not out.exists()


# ----- item 12: a folder of a handful of images trains; precision/recall are left out -------------


def test_a_three_image_folder_trains_and_eval_says_why_nothing_is_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from PIL import Image

    from ganterm.run.jsonl import read_jsonl
    from ganterm.run.status import read_status
    from tests.conftest import tiny_config, train_in_process

    folder = tmp_path / "three"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 40, 200)).save(folder / f"{i}.png")
    run = RunDir(tmp_path / "runs" / "three")
    config = tiny_config(
        "train.steps=4", "train.batch_size=2", "model.image_size=28", "quality.every=2", "checkpoint.every=4",
        data=str(folder),
    )  # fmt: skip
    assert train_in_process(run, config) == 0
    assert read_status(run)["state"] == "finished", read_status(run)
    assert "precision and recall are not measured" in capsys.readouterr().out  # the worker's log, in-process
    assert not [row for row in read_jsonl(run.metrics) if "precision" in row]
    result = _invoke("eval", str(run.path))
    _one_sentence(result, "nothing to measure", "precision and recall are not measured", "more than 3 real images")
