"""safetensors checkpoints: round trip, keep-last-K, and a clear error for each bad file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganterm.run.checkpoints import CheckpointError, find_checkpoint, step_files
from ganterm.run.layout import RunDir
from ganterm.training.checkpoint import load_checkpoint, save_checkpoint, save_generator
from ganterm.training.data import load_dataset
from ganterm.training.models import build_generator
from ganterm.training.trainer import Trainer, complete_config
from tests.conftest import tiny_config


def _trainer(*overrides: str) -> Trainer:
    config = tiny_config(*overrides)
    dataset = load_dataset(config)
    complete_config(config, dataset)
    return Trainer(config, dataset, torch.device("cpu"))


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
    for step in (1, 2, 3, 4):
        trainer.step = step
        save_checkpoint(run, trainer.checkpoint(), keep=2)
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
    with pytest.raises(CheckpointError, match="not a ganterm checkpoint"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path: Path):
    path = tmp_path / "future.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "ganterm-checkpoint", "format_version": "99"})
    with pytest.raises(CheckpointError, match="has format 99, newer than this ganterm reads"):
        load_checkpoint(path)


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
