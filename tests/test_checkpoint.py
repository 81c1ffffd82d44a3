"""safetensors checkpoints: round trip, keep-last-K, and a clear error for each bad file."""

from __future__ import annotations

import errno
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_arrays
from safetensors.torch import load_file, save_file

from ganterm.errors import UserError
from ganterm.run.checkpoints import (
    CheckpointError,
    find_checkpoint,
    latest_step_file,
    newest_intact,
    read_resumable,
    step_files,
)
from ganterm.run.layout import RunDir
from ganterm.run.rewind import abandon_after
from ganterm.training.checkpoint import load_checkpoint, save_checkpoint, save_generator, verify
from ganterm.training.data import load_dataset
from ganterm.training.models import build_generator
from ganterm.training.trainer import Trainer, complete_config
from tests import fault_worker
from tests.conftest import tiny_config


def _trainer(*overrides: str) -> Trainer:
    config = tiny_config(*overrides)
    dataset = load_dataset(config)
    complete_config(config, dataset)
    return Trainer(config, dataset, torch.device("cpu"))


def _save(run: RunDir, trainer: Trainer, steps: tuple[int, ...], keep: int) -> None:
    """A checkpoint at each of `steps`, as the loop saves them, pruned to the newest `keep`."""
    for step in steps:
        trainer.step = step
        save_checkpoint(run, trainer.checkpoint(), keep=keep)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_round_trip_restores_everything(tmp_path: Path):
    run = RunDir(tmp_path)
    trainer = _trainer()
    for _ in range(3):
        trainer.train_step()
    path = save_checkpoint(run, trainer.checkpoint(), keep=3)
    restored = _trainer()
    restored.restore(load_checkpoint(path), path)
    assert restored.step == 3
    assert _same(trainer.generator.state_dict(), restored.generator.state_dict())
    assert _same(trainer.discriminator.state_dict(), restored.discriminator.state_dict())
    assert _same(trainer.generator_ema.state_dict(), restored.generator_ema.state_dict())
    for original, loaded in ((trainer.opt_g, restored.opt_g), (trainer.opt_d, restored.opt_d)):
        for key, state in original.state_dict()["state"].items():
            assert _same(state, loaded.state_dict()["state"][key])
    assert torch.equal(trainer.rng.get_state(), restored.rng.get_state())
    assert torch.equal(trainer.batches.next(), restored.batches.next())


def test_keeps_the_last_k_and_points_latest_at_the_newest(tmp_path: Path):
    run = RunDir(tmp_path)
    trainer = _trainer()
    (tmp_path / "checkpoints").mkdir()
    leftover = tmp_path / "checkpoints" / ".step_0000001.safetensors.999.tmp"
    leftover.write_bytes(b"half a checkpoint from a killed worker")
    _save(run, trainer, (1, 2, 3, 4), keep=2)
    assert [step for step, _ in step_files(run.checkpoints)] == [3, 4]
    latest = run.checkpoints / "latest.safetensors"
    assert latest.is_symlink() and latest.resolve().name == "step_0000004.safetensors"
    assert not leftover.exists()
    assert find_checkpoint(str(tmp_path), tmp_path).name == "step_0000004.safetensors"


def test_not_a_safetensors_file(tmp_path: Path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my notes, not tensors")
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path):
    trainer = _trainer()
    good = save_checkpoint(RunDir(tmp_path), trainer.checkpoint(), keep=1)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="is truncated"):
        load_checkpoint(cut)


def test_safetensors_that_is_not_a_ganterm_checkpoint(tmp_path: Path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(
        CheckpointError, match=rf"^{re.escape(repr(str(path)))} is a safetensors file but not a ganterm"
    ):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path: Path):
    path = tmp_path / "future.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "ganterm-checkpoint", "format_version": "99"})
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert (
        str(refused.value)
        == f"checkpoint {str(path)!r} has format 99, newer than this ganterm reads (1); upgrade ganterm"
    )


def test_other_architecture(tmp_path: Path):
    wide = _trainer("model.width=16")
    path = save_checkpoint(RunDir(tmp_path), wide.checkpoint(), keep=1)
    narrow = _trainer("model.width=8")
    with pytest.raises(CheckpointError, match="made for another architecture"):
        narrow.restore(load_checkpoint(path), path)


def test_missing_checkpoint_names_the_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "gone.safetensors")


def test_header_holds_format_step_and_config(tmp_path: Path):
    trainer = _trainer()
    trainer.step = 5
    path = save_checkpoint(RunDir(tmp_path), trainer.checkpoint(), keep=1)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8 : 8 + length])["__metadata__"]
    assert metadata["format"] == "ganterm-checkpoint" and metadata["format_version"] == "1"
    assert metadata["step"] == "5"
    assert json.loads(metadata["config"])["model"]["width"] == 8


def test_exported_generator_loads_with_plain_safetensors(tmp_path: Path):
    trainer = _trainer()
    trainer.train_step()
    out = tmp_path / "generator.safetensors"
    save_generator(out, trainer.generator_ema.state_dict(), trainer.config, trainer.step)
    weights = load_file(str(out))
    generator = build_generator(trainer.config)
    generator.load_state_dict(weights)
    assert generator(torch.randn(2, 16)).shape == (2, 1, 28, 28)
    assert load_checkpoint(out).step == 1


def test_no_checkpoint_file_keeps_the_notify_url(tmp_path: Path):
    """A webhook's URL is its secret, and checkpoints get shared as exported generators do: neither holds it
    (a resumed run finds it in its config.toml)."""
    trainer = _trainer()
    trainer.config.notify.url = "https://hooks.example.com/services/SECRET"
    out = tmp_path / "generator.safetensors"
    save_generator(out, trainer.generator_ema.state_dict(), trainer.config, trainer.step)
    assert b"SECRET" not in out.read_bytes()
    assert load_checkpoint(out).config.model == trainer.config.model
    saved = save_checkpoint(RunDir(tmp_path / "run"), trainer.checkpoint(), keep=1)
    assert b"SECRET" not in saved.read_bytes()
    assert load_checkpoint(saved).config.model == trainer.config.model
    assert trainer.config.notify.url  # the training run itself goes on notifying


def _data_offset(path: Path, key: str) -> int:
    """Where tensor `key`'s bytes begin in a safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return 8 + length + json.loads(raw[8 : 8 + length])[key]["data_offsets"][0]


def _flip(path: Path, offset: int, value: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(value)


def test_a_bit_flip_in_tensor_data_is_caught_by_the_checksum(tmp_path: Path):
    path = save_checkpoint(RunDir(tmp_path), _trainer().checkpoint(), keep=1)
    key = next(k for k in load_file(str(path)) if k.startswith("generator_ema."))
    _flip(path, _data_offset(path, key), struct.pack("<f", float("nan")))  # what made blank samples, exit 0
    with pytest.raises(CheckpointError, match="is damaged: its tensor data does not match the checksum"):
        load_checkpoint(path)


def test_an_exported_generator_carries_a_checksum_too(tmp_path: Path):
    trainer = _trainer()
    out = tmp_path / "generator.safetensors"
    save_generator(out, trainer.generator_ema.state_dict(), trainer.config, 0)
    _flip(out, _data_offset(out, next(iter(load_file(str(out))))), b"\xff\xff\xff\xff")
    with pytest.raises(CheckpointError, match="is damaged"):
        load_checkpoint(out)


def test_a_checkpoint_written_before_checksums_still_loads(tmp_path: Path):
    path = save_checkpoint(RunDir(tmp_path), _trainer().checkpoint(), keep=1)
    with safe_open(str(path), "pt") as handle:
        metadata = {k: v for k, v in handle.metadata().items() if k != "checksum"}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata=metadata)
    assert load_checkpoint(path).step == 0


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path: Path, damage: str):
    run = RunDir(tmp_path / "runs" / "r")
    trainer = _trainer()
    _save(run, trainer, (4, 8, 12), keep=5)
    newest = run.checkpoints / "step_0000012.safetensors"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:-1000])
    else:
        _flip(newest, newest.stat().st_size - 8, b"\x00\x00\xc0\x7f")
    warnings: list[str] = []
    found = find_checkpoint("r", tmp_path / "runs", verify, warn=warnings.append)
    assert found.name == "step_0000008.safetensors"
    assert len(warnings) == 1 and "step_0000012" in warnings[0] and "step_0000008" in warnings[0]
    if damage == "truncated":  # the header alone tells, without torch: what the launcher checks
        assert newest_intact(run) == found
    named = run.checkpoints / "step_0000012.safetensors"
    with pytest.raises(CheckpointError):  # a file named directly is never swapped for another
        verify(find_checkpoint(str(named), tmp_path / "runs", verify))


def test_a_run_with_no_checkpoint_or_only_damaged_ones_says_so(tmp_path: Path):
    run = RunDir(tmp_path / "runs" / "r")
    run.path.mkdir(parents=True)
    run.config.write_text("")
    assert latest_step_file(run) is None
    with pytest.raises(CheckpointError, match=r"^run 'r' has no checkpoint yet \(it writes one every checkpoint"):
        find_checkpoint("r", tmp_path / "runs")
    trainer = _trainer()
    _save(run, trainer, (2, 4, 8), keep=5)
    warnings: list[str] = []
    assert find_checkpoint("r", tmp_path / "runs", warn=warnings.append).name == "step_0000008.safetensors"
    assert warnings == []  # the newest is intact: nothing passed over, nothing said
    config, step = read_resumable(run.checkpoints / "step_0000004.safetensors")
    assert step == 4 and config.model == trainer.config.model
    for path in run.checkpoints.glob("step_*"):
        path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"step_0000008\.safetensors' is truncated"):  # the newest's problem
        find_checkpoint("r", tmp_path / "runs")
    assert latest_step_file(run) == run.checkpoints / "step_0000008.safetensors"  # by name, intact or not


def test_two_rollbacks_in_one_second_keep_both_sets_aside_and_one_before_every_checkpoint_drops_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("ganterm.run.rewind.time.strftime", lambda pattern: "20261205-120000")  # one second
    run = RunDir(tmp_path)
    trainer = _trainer()
    _save(run, trainer, (4, 8, 12), keep=5)
    first = abandon_after(run, 8)
    trainer.step = 10
    save_checkpoint(run, trainer.checkpoint(), keep=5)
    second = abandon_after(run, 4)
    assert (first.name, second.name) == ("abandoned-20261205-120000", "abandoned-20261205-120000-2")
    assert [p.name for p in first.iterdir()] == ["step_0000012.safetensors"]
    assert sorted(p.name for p in second.iterdir()) == ["step_0000008.safetensors", "step_0000010.safetensors"]
    abandon_after(run, 2)
    assert step_files(run.checkpoints) == [] and not (run.checkpoints / "latest.safetensors").is_symlink()


def test_resuming_from_an_exported_generator_says_what_the_file_is(tmp_path: Path):
    trainer = _trainer()
    out = tmp_path / "generator.safetensors"
    save_generator(out, trainer.generator_ema.state_dict(), trainer.config, 3)
    with pytest.raises(CheckpointError) as refused:
        read_resumable(out)
    assert str(refused.value) == (
        f"{str(out)!r} is an exported generator (written by ganterm export): ganterm sample can use it, but training "
        "cannot resume from it, since it holds no discriminator or optimizer state; resume from a file in the run's "
        "checkpoints/ folder"
    )
    with pytest.raises(CheckpointError, match="is an exported generator") as caught:
        _trainer().restore(load_checkpoint(out), out)
    assert "architecture" not in str(caught.value)


def test_a_full_disk_while_writing_a_checkpoint_is_an_os_error_naming_it(tmp_path: Path, monkeypatch):
    faults = fault_worker.CheckpointFaults(hang=None, full=1, marker=None)
    faults.install(lambda owner, name, value: monkeypatch.setattr(owner, name, value, raising=False))
    faults.count = 1  # as the loop's save_checkpoint would have counted it
    with pytest.raises(OSError) as caught:
        save_checkpoint(RunDir(tmp_path), _trainer().checkpoint(), keep=1)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "checkpoints" / "step_0000000.safetensors")
    assert str(caught.value).startswith("[Errno 28] No space left on device: ")  # said as the system says it
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no temp file left behind


def test_rolling_back_moves_later_checkpoints_aside_and_points_latest_at_the_branch(tmp_path: Path):
    run = RunDir(tmp_path)
    trainer = _trainer()
    _save(run, trainer, (4, 8, 12), keep=3)
    folder = abandon_after(run, 4)
    assert folder is not None and folder.parent == run.checkpoints
    assert re.fullmatch(r"abandoned-\d{8}-\d{6}", folder.name)  # abandoned-20261205-120000: when it was set aside
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000008.safetensors", "step_0000012.safetensors"]
    assert (run.checkpoints / "latest.safetensors").resolve().name == "step_0000004.safetensors"
    _save(run, trainer, (5, 6, 7), keep=3)  # the new branch is what pruning keeps now
    assert [s for s, _ in step_files(run.checkpoints)] == [5, 6, 7]
    assert len(list(folder.iterdir())) == 2
    assert abandon_after(run, 7) is None


def test_a_loops_run_gives_its_newest_ganterm_checkpoint_still_there_or_one_sentence_why_not(tmp_path: Path):
    """`ganterm sample own` of a run fed by a user's loop: the files the loop saved through on_checkpoint count, the
    newest that holds a ganterm generator; files since deleted and saves that named no file are passed over."""
    import ganterm

    ours = save_checkpoint(RunDir(tmp_path / "trained"), _trainer().checkpoint(), keep=1)
    saves = {4: "ganterm", 8: "own", 12: "deleted", 16: None}

    def save(step: int) -> Path | None:
        if saves[step] is None:
            return None
        path = tmp_path / f"loop_{step}.safetensors"
        path.write_bytes(ours.read_bytes() if saves[step] == "ganterm" else b"the loop's own networks")
        return path

    root = tmp_path / "runs"
    with ganterm.Run("own", root=root, on_checkpoint=save) as run:
        run.log(1, loss_d=0.5)
        with pytest.raises(CheckpointError) as nothing_saved:
            find_checkpoint("own", root)
        assert str(nothing_saved.value) == (
            "run 'own' is fed by its own training loop, which has saved no checkpoint file through ganterm.Run's "
            "on_checkpoint (run.checkpoint() or `ganterm checkpoint`) that is still there"
        )
        for step in saves:
            run.checkpoint(step)
        (tmp_path / "loop_12.safetensors").unlink()
    checked: list[Path] = []
    assert find_checkpoint("own", root, checked.append) == tmp_path / "loop_4.safetensors" and checked == [
        tmp_path / "loop_4.safetensors"
    ]
    (tmp_path / "loop_4.safetensors").unlink()
    with pytest.raises(CheckpointError) as refused:
        find_checkpoint("own", root)
    assert str(refused.value) == (
        f"run 'own' is fed by its own training loop, whose checkpoints (the newest: "
        f"{str(tmp_path / 'loop_8.safetensors')!r}, step 8) hold the loop's own networks, not a ganterm generator; "
        "sample it from the loop instead (ganterm snapshot own, or run.images in the loop)"
    )


def test_rolling_back_a_run_that_has_no_checkpoints_yet_moves_nothing(tmp_path: Path):
    assert abandon_after(RunDir(tmp_path), 0) is None and not (tmp_path / "checkpoints").exists()


def test_a_checkpoint_whose_stored_config_is_damaged_is_named_in_one_sentence(tmp_path: Path):
    path = tmp_path / "step_0000004.safetensors"
    metadata = {"format": "ganterm-checkpoint", "step": "4", "config": "{not json"}  # no format_version: as 0
    save_arrays({"w": np.zeros(1, dtype=np.float32)}, str(path), metadata=metadata)
    with pytest.raises(UserError, match=rf"^checkpoint {re.escape(repr(str(path)))} holds a config that is not valid"):
        read_resumable(path)
