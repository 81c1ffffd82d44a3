"""The training loop: one step = `n_critic` D updates, then one G update.

`Trainer` holds everything a checkpoint captures and does one step with every
statistic kept on the device. `fit` runs steps and, between them, a fixed
list of maintenance jobs: control commands, metrics, samples, checkpoints.
Statistics reach the host once per log interval: the `.cpu()` in
`Trainer.flush` is the loop's only regular host sync.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganterm.config import Config
from ganterm.errors import UserError
from ganterm.health import HealthMonitor
from ganterm.progress import stats_line
from ganterm.run.jsonl import JsonlWriter, float32_precision, record_event
from ganterm.run.layout import RunDir
from ganterm.run.status import StatusBoard
from ganterm.training import faults
from ganterm.training.augment import diff_augment
from ganterm.training.checkpoint import Checkpoint, load_weights, save_checkpoint
from ganterm.training.data import Batches, Dataset
from ganterm.training.losses import discriminator_loss, discriminator_targets, generator_loss
from ganterm.training.models import build_discriminator, build_generator
from ganterm.training.quality import QualityProbe
from ganterm.training.sample import FIXED_NOISE_SEED_OFFSET, latent, picture, save_png

STAT_NAMES = (
    "loss_d",
    "loss_d_real",
    "loss_d_fake",
    "loss_g",
    "d_x",
    "d_g_z1",
    "d_g_z2",
    "grad_norm_d",
    "grad_norm_g",
    "diversity",
)
DATA_ON_GPU_LIMIT = 2 * 1024**3  # bytes of uint8 images worth keeping on the GPU
TOY_SAMPLE_POINTS = 2500
PAUSE_POLL_SECONDS = 0.2


def pick_device(name: str) -> torch.device:
    """`auto` = CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"train.device is {name!r} but torch sees no such CUDA GPU here; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device is 'mps' but torch sees no Apple GPU here; use --device auto or cpu")
    return device


def complete_config(config: Config, dataset: Dataset) -> None:
    """Fill in the data-dependent model keys so the saved config rebuilds the model alone."""
    if not dataset.is_image:
        return
    model = config.model
    if model.channels and model.channels != dataset.channels:
        raise UserError(
            f"model.channels is {model.channels} but {config.data.name} has {dataset.channels}-channel images"
        )
    model.channels = dataset.channels
    model.image_size = dataset.image_size


class Trainer:
    """G, D, the EMA copy of G, both optimizers, the data order and the noise stream."""

    def __init__(self, config: Config, dataset: Dataset, device: torch.device) -> None:
        self.config, self.device = config, device
        train = config.train
        torch.manual_seed(train.seed)
        compiled = train.compile and device.type == "cuda"
        # channels_last alone takes this DCGAN on CPU from ~390 to ~550 img/s; it only touches 4-D weights.
        # Compiled models stay contiguous: inductor mispredicts the strides of a channels_last
        # ConvTranspose2d backward on CUDA and fails (pytorch/pytorch#171622); it picks layouts itself.
        layout = torch.contiguous_format if compiled else torch.channels_last
        self.generator = build_generator(config).to(device, memory_format=layout)
        self.discriminator = build_discriminator(config).to(device, memory_format=layout)
        self.generator_ema: nn.Module | None = None
        if train.ema > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        # fused Adam honours `found_inf`, which lets a non-finite step be skipped on the device
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=train.lr_g, betas=(train.beta1, train.beta2), fused=True
        )
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=train.lr_d, betas=(train.beta1, train.beta2), fused=True
        )
        self.g_forward = torch.compile(self.generator) if compiled else self.generator
        self.d_forward = torch.compile(self.discriminator) if compiled else self.discriminator
        self.noise = torch.Generator(device).manual_seed(train.seed + 1)
        on_gpu = device.type != "cpu" and dataset.tensor.nbytes <= DATA_ON_GPU_LIMIT
        self.dataset = dataset.to(device) if on_gpu else dataset
        self.batches = Batches(len(dataset), train.batch_size, train.seed + 2, self.dataset.tensor.device)
        self.step = 0
        self.bad_streak = 0
        fixed_count = TOY_SAMPLE_POINTS if config.is_toy else config.sample.count
        self.fixed_z = latent(train.seed + FIXED_NOISE_SEED_OFFSET, fixed_count, config.model.z_dim)
        self._pending: list[torch.Tensor] = []
        self._pending_meta: list[tuple[int, float, float]] = []
        self._nan_steps = faults.steps("nan_at")

    @property
    def images_per_step(self) -> int:
        return self.config.train.batch_size * self.config.train.n_critic

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _real_batch(self) -> torch.Tensor:
        real = self.dataset.batch(self.batches.next())
        return real.to(self.device, non_blocking=True)

    def _targets(self, count: int, real: bool) -> torch.Tensor:
        loss = self.config.loss
        return discriminator_targets(count, real, loss.label_smoothing, loss.label_noise, self.noise, self.device)

    def _apply(self, optimizer: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor):
        """Step `optimizer` unless the loss or gradient is non-finite; no host sync either way."""
        norm = torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None])
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        optimizer.found_inf = (~finite).float()  # read by fused Adam, as GradScaler uses it
        optimizer.step()
        return norm, finite

    def _seen_by_d(self, images: torch.Tensor) -> torch.Tensor:
        """Images as D sees them: augmented when train.augment is on (image data only)."""
        if not self.config.train.augment or self.config.is_toy:
            return images
        return diff_augment(images, self.noise)

    def train_step(self) -> None:
        kind = self.config.loss.kind
        batch = self.config.train.batch_size
        z_dim = self.config.model.z_dim
        poison = float("nan") if self.step + 1 in self._nan_steps else 1.0
        for critic_step in range(self.config.train.n_critic):
            last = critic_step == self.config.train.n_critic - 1
            real = self._real_batch()
            z = torch.randn(batch, z_dim, generator=self.noise, device=self.device)
            with torch.set_grad_enabled(last), self._autocast():
                fake = self.g_forward(z)
            with self._autocast():
                real_logits = self.d_forward(self._seen_by_d(real))
                fake_logits = self.d_forward(self._seen_by_d(fake.detach()))
            loss_d_real = discriminator_loss(kind, real_logits, self._targets(batch, real=True))
            loss_d_fake = discriminator_loss(kind, fake_logits, self._targets(batch, real=False))
            loss_d = (loss_d_real + loss_d_fake) * poison
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            grad_norm_d, finite_d = self._apply(self.opt_d, self.discriminator, loss_d)

        self.discriminator.requires_grad_(False)
        with self._autocast():
            fake_logits_g = self.d_forward(self._seen_by_d(fake))
        loss_g = generator_loss(kind, fake_logits_g) * poison
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g, finite_g = self._apply(self.opt_g, self.generator, loss_g)
        self.discriminator.requires_grad_(True)
        self._update_ema()

        values = (
            loss_d,
            loss_d_real,
            loss_d_fake,
            loss_g,
            torch.sigmoid(real_logits.float()).mean(),
            torch.sigmoid(fake_logits.float()).mean(),
            torch.sigmoid(fake_logits_g.float()).mean(),
            grad_norm_d,
            grad_norm_g,
            _spread(fake.detach()) / _spread(real),
            finite_d & finite_g,
        )
        self._pending.append(torch.stack([v.detach().float() for v in values]))
        self.step += 1
        self._pending_meta.append((self.step, time.time(), self.batches.epochs_done))

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        # warm-up: early on, a 0.999 average would mostly remember the random initial weights
        decay = min(self.config.train.ema, (1 + self.step) / (10 + self.step))
        # one fused launch per list instead of one per tensor: on a GPU this loop is launch-bound
        torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.generator.parameters()), 1 - decay)
        buffers = list(self.generator_ema.buffers())
        if buffers:  # BatchNorm statistics; the toys' MLP has none
            torch._foreach_copy_(buffers, list(self.generator.buffers()))

    def flush(self) -> list[dict[str, Any]]:
        """Metric rows of the steps since the last flush; counts non-finite steps."""
        if not self._pending:
            return []
        table = torch.stack(self._pending).cpu().tolist()  # note: the loop's one regular CPU-GPU sync point
        rows = []
        for (step, when, epoch), values in zip(self._pending_meta, table, strict=True):
            *stats, finite_flag = values
            finite = finite_flag > 0.5
            self.bad_streak = 0 if finite else self.bad_streak + 1
            stats = [float32_precision(value) for value in stats]
            row = {
                "step": step,
                "t": round(when, 3),
                "epoch": round(epoch, 4),
                **dict(zip(STAT_NAMES, stats, strict=True)),
            }
            if not finite:
                row["nonfinite"] = 1
            rows.append(row)
        lr = {"lr_d": self.opt_d.param_groups[0]["lr"], "lr_g": self.opt_g.param_groups[0]["lr"]}
        if self.device.type == "cuda":
            lr["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3)
        for row in rows:
            row.update(lr)
        self._pending.clear()
        self._pending_meta.clear()
        return rows

    @property
    def sampler(self) -> nn.Module:
        return self.generator_ema or self.generator

    def sample_image(self):
        """The grid (or toy scatter) of the fixed noise batch."""
        return picture(self.sampler, self.config, self.fixed_z)

    def state(self) -> Checkpoint:
        rng = {"noise": self.noise.get_state(), "torch": torch.get_rng_state()}
        rng |= {f"batches.{k}": v for k, v in self.batches.state_dict().items()}
        return Checkpoint(
            step=self.step,
            config=self.config,
            generator=self.generator.state_dict(),
            discriminator=self.discriminator.state_dict(),
            generator_ema=self.generator_ema.state_dict() if self.generator_ema else {},
            optimizer_g=self.opt_g.state_dict(),
            optimizer_d=self.opt_d.state_dict(),
            rng=rng,
        )

    def restore(self, checkpoint: Checkpoint, path: Path) -> None:
        load_weights(self.generator, checkpoint.generator, path, "generator")
        load_weights(self.discriminator, checkpoint.discriminator, path, "discriminator")
        if self.generator_ema is not None:
            load_weights(self.generator_ema, checkpoint.generator_ema or checkpoint.generator, path, "generator")
        for optimizer, state in ((self.opt_g, checkpoint.optimizer_g), (self.opt_d, checkpoint.optimizer_d)):
            optimizer.load_state_dict(state)
            _match_layouts(optimizer)
        self.noise.set_state(checkpoint.rng["noise"])
        torch.set_rng_state(checkpoint.rng["torch"])
        self.batches.load_state_dict({k[8:]: v for k, v in checkpoint.rng.items() if k.startswith("batches.")})
        self.step = checkpoint.step


def _spread(batch: torch.Tensor) -> torch.Tensor:
    """Mean pairwise distance within a batch: how varied the samples are."""
    return torch.pdist(batch.detach().float().flatten(1)).mean()


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded Adam moments their parameter's memory layout (channels_last).

    Files store tensors contiguous; fused Adam takes another vectorised path
    when a moment's strides differ from its parameter's, and rounds a little
    differently, which would break bit-exact resumption.
    """
    for parameter, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                state[key] = torch.empty_like(parameter).copy_(value)


Command = dict[str, Any]


@dataclass
class Loop:
    """`fit`'s collaborators: where it writes, and how it hears commands."""

    run: RunDir
    status: StatusBoard
    total_steps: int
    poll: Callable[[], list[Command]] = lambda: []
    log: Callable[[str], None] = print
    health: HealthMonitor | None = None
    quality: QualityProbe | None = None
    last_checkpoint: int = -1
    last_row: dict[str, Any] = field(default_factory=dict)
    _interval_start: float = field(default_factory=time.perf_counter)


def _ack(command: Command | None) -> dict[str, Any]:
    return {"ack": command["id"]} if command and "id" in command else {}


def write_sample(trainer: Trainer, loop: Loop, command: Command | None = None) -> None:
    path = loop.run.sample_path(trainer.step)
    save_png(trainer.sample_image(), path)
    record_event(loop.run, "sample", trainer.step, path=str(path.relative_to(loop.run.path)), **_ack(command))


def write_checkpoint(trainer: Trainer, loop: Loop, command: Command | None = None) -> None:
    path = save_checkpoint(loop.run, trainer.state(), keep=trainer.config.checkpoint.keep)
    loop.last_checkpoint = trainer.step
    record_event(loop.run, "checkpoint", trainer.step, path=str(path.relative_to(loop.run.path)), **_ack(command))


def _set_state(trainer: Trainer, loop: Loop, state: str, command: Command | None = None, **fields: Any) -> None:
    loop.status.update(state=state, step=trainer.step, **fields)
    record_event(loop.run, "status", trainer.step, state=state, **_ack(command), **fields)
    loop.log(f"step {trainer.step}: {state}")


def _flush(trainer: Trainer, loop: Loop, metrics: JsonlWriter) -> None:
    rows = trainer.flush()
    if not rows:
        return
    elapsed = time.perf_counter() - loop._interval_start
    rate = round(len(rows) * trainer.images_per_step / max(elapsed, 1e-9), 1)
    for row in rows:
        row["img_per_s"] = rate
    faults.disk_full_if("disk_full_at", trainer.step, metrics.path)
    metrics.write(rows)
    _check_health(loop, rows)
    loop.last_row = rows[-1]
    loop.status.update(step=trainer.step)
    loop._interval_start = time.perf_counter()


def _check_health(loop: Loop, rows: list[dict[str, Any]]) -> None:
    if loop.health is None:
        return
    for alert in loop.health.update(rows):
        record_event(loop.run, "alert", alert.step, **alert.event())
        loop.log(f"alert at step {alert.step}: {alert.message}")


def measure_quality(trainer: Trainer, loop: Loop, metrics: JsonlWriter) -> None:
    """Quality metrics go into metrics.jsonl as their own row, so every viewer can plot them."""
    if loop.quality is None:
        return
    row = {"step": trainer.step, "t": time.time(), **loop.quality.measure(trainer.sampler, trainer.config.model.z_dim)}
    metrics.write([row])
    _check_health(loop, [row])


@contextlib.contextmanager
def _maintenance(loop: Loop) -> Iterator[None]:
    """Time spent writing samples and checkpoints does not count against img/s."""
    started = time.perf_counter()
    yield
    loop._interval_start += time.perf_counter() - started


def fit(trainer: Trainer, loop: Loop) -> str:
    """Train to `loop.total_steps`; returns the final state: finished, stopped or failed."""
    config = trainer.config
    paused = False
    stop_command: Command | None = None
    _set_state(trainer, loop, "running", total=loop.total_steps)
    with JsonlWriter(loop.run.metrics) as metrics:
        while trainer.step < loop.total_steps and stop_command is None:
            # 1. commands from viewers and signals
            for command in loop.poll():
                name = command.get("cmd")
                if name == "stop":
                    stop_command = command
                elif name == "pause" and not paused:
                    _flush(trainer, loop, metrics)
                    paused = True
                    _set_state(trainer, loop, "paused", command)
                elif name == "unpause" and paused:
                    paused = False
                    loop._interval_start = time.perf_counter()
                    _set_state(trainer, loop, "running", command)
                elif name == "checkpoint":
                    with _maintenance(loop):
                        write_checkpoint(trainer, loop, command)
                elif name == "sample":
                    with _maintenance(loop):
                        write_sample(trainer, loop, command)
            if paused or stop_command is not None:
                if paused and stop_command is None:
                    time.sleep(PAUSE_POLL_SECONDS)
                continue
            # 2. one step
            trainer.train_step()
            step = trainer.step
            # 3. metrics, then the non-finite guard
            if step % config.log.every == 0 or step == loop.total_steps:
                _flush(trainer, loop, metrics)
                if trainer.bad_streak >= config.train.max_bad_steps:
                    return _fail_nonfinite(trainer, loop)
            # 4. samples and checkpoints
            with _maintenance(loop):
                if config.sample.every and step % config.sample.every == 0:
                    write_sample(trainer, loop)
                    epoch = trainer.batches.epochs_done
                    loop.log(f"step {step}/{loop.total_steps} epoch {epoch:.2f}  {stats_line(loop.last_row)}")
                if config.checkpoint.every and step % config.checkpoint.every == 0:
                    write_checkpoint(trainer, loop)
                if config.quality.every and step % config.quality.every == 0:
                    measure_quality(trainer, loop, metrics)
        # 5. the end, finished or stopped: nothing trained is left unsaved
        _flush(trainer, loop, metrics)
        if trainer.bad_streak >= config.train.max_bad_steps:
            return _fail_nonfinite(trainer, loop)
        if not loop.run.sample_path(trainer.step).exists():
            write_sample(trainer, loop)
        if loop.last_checkpoint != trainer.step:
            write_checkpoint(trainer, loop)
        if config.quality.every and trainer.step % config.quality.every:
            measure_quality(trainer, loop, metrics)
    state = "stopped" if stop_command is not None else "finished"
    _set_state(trainer, loop, state, stop_command)
    return state


def _fail_nonfinite(trainer: Trainer, loop: Loop) -> str:
    """Stop without checkpointing: the newest checkpoint on disk stays the last good one."""
    kept = f"step {loop.last_checkpoint}" if loop.last_checkpoint >= 0 else "none yet"
    message = (
        f"stopped after {trainer.bad_streak} consecutive steps with non-finite losses "
        f"(train.max_bad_steps); last good checkpoint: {kept}"
    )
    record_event(loop.run, "alert", trainer.step, check="nonfinite", severity="error", message=message)
    _set_state(trainer, loop, "failed", error=message)
    return "failed"


def _progress_line(trainer: Trainer, loop: Loop) -> str:
    row = loop.last_row
    stats = " ".join(
        f"{name} {row[name]:.3f}" for name in ("loss_d", "loss_g", "d_x", "d_g_z1") if isinstance(row.get(name), float)
    )
    return (
        f"step {trainer.step}/{loop.total_steps} epoch {trainer.batches.epochs_done:.2f} {stats} "
        f"{row.get('img_per_s', 0):.0f} img/s"
    )
