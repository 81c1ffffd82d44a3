"""Pictures of a generator: PNG grids, latent walks, toy scatter plots, timelapses.

Latent noise is drawn on the CPU from a seeded generator and then moved, so a
seed gives the same samples on every device.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from torch import nn

from ganterm.config import Config
from ganterm.errors import UserError
from ganterm.run.files import write_atomic
from ganterm.run.layout import GRID_KEY, GRID_PADDING

FIXED_NOISE_SEED_OFFSET = 1_000_003  # the fixed sample batch never shares a stream with training noise
SCATTER_SIZE = 320


def latent(seed: int, count: int, z_dim: int) -> torch.Tensor:
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed))


def slerp(a: torch.Tensor, b: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents live near a sphere, not on a line."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.acos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, fractions[:, None])
    weights_a = torch.sin((1 - fractions) * omega) / torch.sin(omega)
    weights_b = torch.sin(fractions * omega) / torch.sin(omega)
    return weights_a[:, None] * a + weights_b[:, None] * b


def latent_walk(seed_a: int, seed_b: int, frames: int, z_dim: int) -> torch.Tensor:
    a, b = latent(seed_a, 1, z_dim)[0], latent(seed_b, 1, z_dim)[0]
    return slerp(a, b, torch.linspace(0, 1, frames))


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Generator output for `z` (on the CPU, float32), in chunks to bound memory.

    BatchNorm runs on its running statistics (eval mode): a sample then does
    not depend on the rest of its batch, and sampling changes nothing in the
    model, so a run that samples more often still trains bit for bit the same.
    (Compared on an mnist5k run, the grids match those made with batch statistics.)
    """
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        outputs = [generator(part.to(device)).float().cpu() for part in z.split(chunk)]
    finally:
        generator.train(was_training)
    return torch.cat(outputs)


def image_grid(images: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """A grid of [-1, 1] images, `nrow` per row (square by default).

    The PNG carries its layout (GRID_KEY: images, columns, rows, and a cell's width
    and height with padding), so a viewer short of pixels can show some samples legibly.
    """
    # here, not at the top: importing torchvision takes about 1.3 s of CPU (it loads torch._dynamo), which
    # every worker paid at its start, a run with no sample grids (sample.every = 0) included; a run that
    # draws grids now pays it at its first grid instead
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(images.float(), nrow=nrow, padding=GRID_PADDING, normalize=True, value_range=(-1, 1),
                     pad_value=0.25)  # fmt: skip
    array = grid.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    image = Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)
    count = images.shape[0]
    columns, rows = min(nrow, count), math.ceil(count / nrow)
    cell_width, cell_height = images.shape[-1] + GRID_PADDING, images.shape[-2] + GRID_PADDING
    image.info[GRID_KEY] = f"{count} {columns} {rows} {cell_width} {cell_height}"
    return image


def scatter_plot(points: torch.Tensor, modes: torch.Tensor, extent: float) -> Image.Image:
    """2-D samples (white) over the true mode centres (red rings), in data coordinates."""
    image = Image.new("RGB", (SCATTER_SIZE, SCATTER_SIZE), (16, 16, 24))
    draw = ImageDraw.Draw(image)

    def pixel(x: float, y: float) -> tuple[float, float]:
        return ((x / extent + 1) / 2 * (SCATTER_SIZE - 1), (1 - (y / extent + 1) / 2) * (SCATTER_SIZE - 1))

    for x, y in points.tolist():
        px, py = pixel(x, y)
        draw.point((px, py), fill=(235, 235, 235))
    for x, y in modes.tolist():
        px, py = pixel(x, y)
        draw.ellipse((px - 5, py - 5, px + 5, py + 5), outline=(230, 60, 60))
    return image


def png_bytes(image: Image.Image) -> bytes:
    text = PngInfo()
    if GRID_KEY in image.info:
        text.add_text(GRID_KEY, image.info[GRID_KEY])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=text)
    return buffer.getvalue()


def save_png(image: Image.Image, path: Path) -> None:
    """Written whole or not at all: viewers never load half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png_bytes(image))


def timelapse(frames: list[Path], out: Path, frame_ms: int = 120) -> int:
    """An animated GIF of the sample grids, in step order; returns how many were unreadable and left out.

    A grid cut short (a full disk, a copy in progress) or not a picture at all costs its frame, not the GIF.
    """
    images = []
    for path in frames:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError):  # PIL's ways of saying "not a readable picture"
            continue
    if not images:
        raise UserError(f"none of the {len(frames)} sample grids in {str(frames[0].parent)!r} can be read")
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buffer.getvalue())
    return len(frames) - len(images)


def picture(generator: nn.Module, config: Config, z: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """A grid for image models; for 2-D toys, a scatter over the true modes."""
    from ganterm.training.data import TOY_SCALE, toy_modes

    output = generate(generator, z)
    if not config.is_toy:
        return image_grid(output, nrow)
    scale = TOY_SCALE[config.data.name]
    modes, _ = toy_modes(config.data.name)
    return scatter_plot(output * scale, modes, extent=scale)


def render_checkpoint(
    path: Path, count: int, seed: int, nrow: int | None = None, walk_to: int | None = None
) -> tuple[Image.Image, int]:
    """The picture `ganterm sample` writes, from a checkpoint alone; also returns its step."""
    from ganterm.training.checkpoint import load_generator

    generator, checkpoint = load_generator(path)
    z_dim = checkpoint.config.model.z_dim
    z = latent_walk(seed, walk_to, count, z_dim) if walk_to is not None else latent(seed, count, z_dim)
    return picture(generator, checkpoint.config, z, nrow), checkpoint.step
