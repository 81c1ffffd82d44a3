"""Datasets that work offline, decoded once; the offline error for downloads; batch order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ganterm.training.data import (
    Batches,
    DataError,
    load_dataset,
    load_folder,
    load_torchvision,
    toy_dataset,
    toy_modes,
)
from tests.conftest import tiny_config


def test_mnist5k_is_real_digits_in_one_uint8_tensor():
    data = load_dataset(tiny_config())
    assert data.tensor.shape == (5000, 1, 28, 28)
    assert data.tensor.dtype == torch.uint8
    assert data.labels is not None and sorted(data.labels.unique().tolist()) == list(range(10))
    # digits are bright strokes on black: the border is empty and the centre is not
    assert data.tensor[:, :, :2, :].float().mean() < 1.0
    assert data.tensor[:, :, 10:18, 10:18].float().mean() > 60.0


def test_batches_are_normalised_to_minus_one_one():
    data = load_dataset(tiny_config())
    batch = data.batch(torch.arange(64))
    assert batch.dtype == torch.float32 and batch.shape == (64, 1, 28, 28)
    assert batch.min() == -1.0 and batch.max() == 1.0


def test_image_size_resizes_once_up_front():
    data = load_dataset(tiny_config("model.image_size=32"))
    assert data.tensor.shape == (5000, 1, 32, 32) and data.tensor.dtype == torch.uint8


def _write_images(folder: Path, count: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        color = (i * 40) % 256 if mode == "L" else (i * 40 % 256, 10, 200)
        Image.new(mode, size, color=color).save(folder / f"{i}.png")


def test_folder_nested_and_flat_with_unreadable_files_counted(tmp_path: Path):
    _write_images(tmp_path / "cats", 3)
    _write_images(tmp_path / "dogs", 2, mode="L")
    _write_images(tmp_path, 1, size=(64, 64))
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    messages: list[str] = []
    data = load_folder(tmp_path, 32, progress=messages.append)
    assert data.tensor.shape == (6, 3, 32, 32)
    assert messages == [f"warning: skipped 1 unreadable file(s) of 7 in {tmp_path}"]


def test_folder_errors_name_the_folder(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope", 32)
    with pytest.raises(DataError, match="holds no images"):
        load_folder(tmp_path, 32)
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 files"):
        load_folder(tmp_path, 32)


def test_folder_through_the_config_defaults_to_64_px(tmp_path: Path):
    _write_images(tmp_path, 4)
    data = load_dataset(tiny_config(data=str(tmp_path)))
    assert data.tensor.shape == (4, 3, 64, 64)


def test_torchvision_download_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from urllib.error import URLError

    from torchvision import datasets

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets, "CIFAR10", offline)
    with pytest.raises(DataError) as caught:
        load_torchvision("cifar10", tmp_path)
    message = str(caught.value)
    assert message.startswith(f"could not download cifar10 into {tmp_path}")
    assert "--data mnist5k" in message


@pytest.mark.parametrize(("name", "count", "sigma"), [("ring", 8, 0.02), ("grid", 25, 0.05)])
def test_toys_are_the_published_mixtures(name: str, count: int, sigma: float):
    modes, spread = toy_modes(name)
    assert modes.shape == (count, 2) and spread == sigma
    data = toy_dataset(name, seed=0)
    assert data.tensor.abs().max() <= 1.0
    points = data.tensor * data.point_scale
    nearest = torch.cdist(points, modes).min(dim=1).values
    assert (nearest < 4 * sigma).float().mean() > 0.999
    assert torch.bincount(data.labels, minlength=count).min() > len(data) / count * 0.9


def test_batches_resume_exactly_mid_epoch():
    first = Batches(size=100, batch_size=30, seed=5)
    for _ in range(4):  # crosses an epoch boundary
        first.next()
    saved = first.state_dict()
    expected = [first.next() for _ in range(5)]
    second = Batches(size=100, batch_size=30, seed=5)
    second.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(expected, (second.next() for _ in range(5)), strict=True))


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(DataError, match=r"train\.batch_size 64 is larger than the dataset"):
        Batches(size=10, batch_size=64, seed=0)
