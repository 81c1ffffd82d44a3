"""One training step = `n_critic` D updates, then one G update.

`Trainer` holds everything a checkpoint captures and does one step with every
statistic kept on the device, by name (`ganterm.run.schema.STEP_STATISTICS`).
Statistics reach the host once per log interval: the `.cpu()` in
`Trainer.collect_rows` is the loop's only regular host sync.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganterm.config import Config, learning_rate_scale, resolve_steps
from ganterm.errors import UserError
from ganterm.families import family_named
from ganterm.run.checkpoints import CheckpointError, exported_generator
from ganterm.run.jsonl import float32_precision
from ganterm.run.schema import STEP_STATISTICS
from ganterm.training.augment import diff_augment
from ganterm.training.checkpoint import Checkpoint, load_weights
from ganterm.training.data import TOY_SAMPLE_POINTS, Batches, Dataset
from ganterm.training.distributed import Group
from ganterm.training.losses import (
    PAIRED,
    discriminator_loss,
    discriminator_targets,
    generator_loss,
    input_gradient_norms,
    interpolates,
    paired_discriminator_loss,
)
from ganterm.training.models import build_discriminator, build_generator
from ganterm.training.sample import FIXED_NOISE_SEED_OFFSET, latent, picture

DATA_ON_GPU_LIMIT = 2 * 1024**3  # bytes of uint8 images worth keeping on the GPU
RANK_SEED_STRIDE = 1_000_003  # rank r's noise stream starts at seed + 1 + r * stride
SPLIT_LOSSES = ("loss_d_real", "loss_d_fake")  # D's loss on each batch alone: a paired loss has no such halves


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` = CUDA, then MPS, then CPU; an explicit device must exist. Rank r of a node takes GPU r."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank else torch.device("cuda")
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
    """G, D, the EMA copy of G, both optimizers, the data order and the noise stream.

    In a group of several processes each network is wrapped in its own
    DistributedDataParallel (one wrapper around both fails in GAN loops), each
    rank trains on its slice of every global batch with noise of its own, and
    statistics are averaged over the ranks once per flush. DDP broadcasts rank
    0's buffers (BatchNorm statistics, spectral norm's `u`) at each wrapped
    forward, so every rank normalises alike; parameters stay identical because
    every rank applies the same averaged gradients.
    """

    def __init__(self, config: Config, dataset: Dataset, device: torch.device, group: Group | None = None) -> None:
        self.config, self.device = config, device
        self.group = group or Group()
        train = config.train
        if train.batch_size % self.group.world_size:
            raise UserError(
                f"train.batch_size {train.batch_size} is the global batch and must divide evenly among "
                f"{self.group.world_size} processes; pick a multiple of {self.group.world_size}"
            )
        self.local_batch = train.batch_size // self.group.world_size
        self.total_steps = resolve_steps(config, len(dataset))  # where a learning-rate decay ends
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
        if train.sync_batchnorm and self.group.distributed:
            if device.type != "cuda":
                raise UserError("train.sync_batchnorm needs CUDA GPUs (SyncBatchNorm does not run on the CPU)")
            # after the EMA copy, which keeps plain BatchNorm: it samples outside the group
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
            self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        g_forward, d_forward = self.generator, self.discriminator
        if self.group.distributed:
            g_forward, d_forward = DistributedDataParallel(g_forward), DistributedDataParallel(d_forward)
        self.g_forward = torch.compile(g_forward) if compiled else g_forward
        # a gradient penalty is a double backward, which torch.compile does not do: D then runs eagerly
        penalised = config.loss.kind == "wgan-gp" or config.loss.r1_gamma > 0 or config.loss.r2_gamma > 0
        compile_d = compiled and not penalised
        self.d_forward = torch.compile(d_forward) if compile_d else d_forward
        # G's step goes through D unwrapped: D's parameters are frozen there, and a DDP forward would
        # wait for gradients of D that never come ("Expected to have finished reduction").
        self.d_for_g = torch.compile(self.discriminator) if compile_d else self.discriminator
        self.family = family_named(config.loss.kind)
        # this loss's statistics, in the order of the vector a step stacks: the shared ones, then its family's
        # series and its penalties (a lazily computed penalty is NaN on other steps and left out of the row)
        shared = tuple(name for name in STEP_STATISTICS if not (config.loss.kind in PAIRED and name in SPLIT_LOSSES))
        self.penalties = tuple(
            name
            for name, weight in (
                ("gp", config.loss.gp_weight * (config.loss.kind == "wgan-gp")),
                ("r1", config.loss.r1_gamma),
                ("r2", config.loss.r2_gamma),
            )
            if weight > 0
        )
        self.statistics = (*shared, *self.family.series, *self.penalties)
        # noise, label noise and augmentation; each rank draws its own, rank 0 as a single process would
        self.rng = torch.Generator(device).manual_seed(train.seed + 1 + RANK_SEED_STRIDE * self.group.rank)
        on_gpu = device.type != "cpu" and dataset.tensor.nbytes <= DATA_ON_GPU_LIMIT
        self.dataset = dataset.to(device) if on_gpu else dataset
        self.batches = Batches(len(dataset), train.batch_size, train.seed + 2, self.dataset.tensor.device)
        self.step = 0
        self.bad_streak = 0
        fixed_count = TOY_SAMPLE_POINTS if config.is_toy else config.sample.count
        self.fixed_z = latent(train.seed + FIXED_NOISE_SEED_OFFSET, fixed_count, config.model.z_dim)
        self._pending: list[torch.Tensor] = []  # one stacked vector of statistics per step
        self._pending_meta: list[tuple[int, float, float, dict[str, float]]] = []  # step, wall time, epoch, rates

    @property
    def images_per_step(self) -> int:
        return self.config.train.batch_size * self.config.train.n_critic

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _real_batch(self) -> torch.Tensor:
        """This rank's slice of the global batch: the same order everywhere, disjoint slices."""
        start = self.group.rank * self.local_batch
        real = self.dataset.batch(self.batches.next()[start : start + self.local_batch])
        return real.to(self.device, non_blocking=True)

    def _targets(self, count: int, real: bool) -> torch.Tensor:
        loss = self.config.loss
        return discriminator_targets(count, real, loss.label_smoothing, loss.label_noise, self.rng, self.device)

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
        return diff_augment(images, self.rng)

    def _lazy_penalty_step(self, critic_step: int) -> bool:
        """Whether this D step computes R1 and R2: every `loss.penalty_every`-th D step of the run."""
        d_steps = self.step * self.config.train.n_critic + critic_step
        return d_steps % self.config.loss.penalty_every == 0

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, lazy: bool) -> dict[str, torch.Tensor]:
        """One D update; its statistics by name (penalties as they enter D's loss, NaN when not computed)."""
        loss = self.config.loss
        kind, batch = loss.kind, self.local_batch
        seen_real, seen_fake = self._seen_by_d(real), self._seen_by_d(fake.detach())
        r1, r2 = lazy and loss.r1_gamma > 0, lazy and loss.r2_gamma > 0
        # R1 and R2 differentiate D's scores by its inputs: the same forward serves the loss and the penalty
        seen_real = seen_real.detach().requires_grad_(True) if r1 else seen_real
        seen_fake = seen_fake.detach().requires_grad_(True) if r2 else seen_fake
        with self._autocast():
            real_logits = self.d_forward(seen_real)
            fake_logits = self.d_forward(seen_fake)
        out: dict[str, torch.Tensor] = {"real_logits": real_logits, "fake_logits": fake_logits}
        if kind in PAIRED:
            adversarial = paired_discriminator_loss(kind, real_logits, fake_logits)
        else:
            out["loss_d_real"] = discriminator_loss(kind, real_logits, self._targets(batch, real=True))
            out["loss_d_fake"] = discriminator_loss(kind, fake_logits, self._targets(batch, real=False))
            adversarial = out["loss_d_real"] + out["loss_d_fake"]
        computed: dict[str, torch.Tensor] = {}
        optimised = adversarial
        if "gp" in self.penalties:
            mixed = interpolates(seen_real.detach(), seen_fake.detach(), self.rng)
            with self._autocast():
                mixed_logits = self.d_forward(mixed)
            computed["gp"] = loss.gp_weight * (input_gradient_norms(mixed_logits, mixed) - 1).square().mean()
            optimised = optimised + computed["gp"]
        for name, on, logits, inputs, gamma in (
            ("r1", r1, real_logits, seen_real, loss.r1_gamma),
            ("r2", r2, fake_logits, seen_fake, loss.r2_gamma),
        ):
            if on:
                computed[name] = gamma / 2 * input_gradient_norms(logits, inputs).square().mean()
                optimised = optimised + loss.penalty_every * computed[name]  # lazy: k steps' worth at once
        self.opt_d.zero_grad(set_to_none=True)
        optimised.backward()
        out["grad_norm_d"], out["finite_d"] = self._apply(self.opt_d, self.discriminator, optimised)
        # logged: D's loss with each penalty computed at its per-step weight, not the lazy step's k-fold
        out["loss_d"] = adversarial + sum(computed.values(), torch.zeros((), device=self.device))
        nan = torch.full((), math.nan, device=self.device)
        return out | {name: computed.get(name, nan) for name in self.penalties}

    def train_step(self) -> None:
        self._schedule_learning_rates()
        kind = self.config.loss.kind
        batch = self.local_batch
        z_dim = self.config.model.z_dim
        penalties: dict[str, torch.Tensor] = {}
        for critic_step in range(self.config.train.n_critic):
            last = critic_step == self.config.train.n_critic - 1
            real = self._real_batch()
            z = torch.randn(batch, z_dim, generator=self.rng, device=self.device)
            with torch.set_grad_enabled(last), self._autocast():
                fake = self.g_forward(z)
            d = self._discriminator_step(real, fake, self._lazy_penalty_step(critic_step))
            # a penalty computed on any of this step's D updates is this step's value (no host sync to choose)
            penalties = {
                name: torch.where(d[name].isfinite(), d[name], penalties[name]) if penalties else d[name]
                for name in self.penalties
            }

        self.discriminator.requires_grad_(False)
        real_logits_g = None
        with self._autocast():
            fake_logits_g = self.d_for_g(self._seen_by_d(fake))
            if kind in PAIRED:  # G's loss pairs its fakes with real images, as D sees them now
                real_logits_g = self.d_for_g(self._seen_by_d(real)).detach()
        loss_g = generator_loss(kind, fake_logits_g, real_logits_g)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm_g, finite_g = self._apply(self.opt_g, self.generator, loss_g)
        self.discriminator.requires_grad_(True)
        self._update_ema()

        read = torch.sigmoid if self.family.probability else torch.nn.Identity()  # the family says how
        real_scores, fake_scores = d["real_logits"].detach().float(), d["fake_logits"].detach().float()
        statistics = {
            **d,
            **penalties,
            "loss_g": loss_g,
            "d_x": read(real_scores).mean(),
            "d_g_z1": read(fake_scores).mean(),
            "d_g_z2": read(fake_logits_g.detach().float()).mean(),
            "grad_norm_g": grad_norm_g,
            "diversity": _spread(fake.detach()) / _spread(real),
            "score_gap": real_scores.mean() - fake_scores.mean(),
            "real_above_margin": (real_scores > 1).float().mean(),
            "fake_below_margin": (fake_scores < -1).float().mean(),
            "finite": d["finite_d"] & finite_g,
        }
        # one vector per step, in self.statistics' order, the finite flag last: one transfer per flush
        self._pending.append(torch.stack([statistics[name].detach().float() for name in (*self.statistics, "finite")]))
        self.step += 1
        rates = {"lr_d": self.opt_d.param_groups[0]["lr"], "lr_g": self.opt_g.param_groups[0]["lr"]}
        self._pending_meta.append((self.step, time.time(), self.batches.epochs_done, rates))

    def _schedule_learning_rates(self) -> None:
        train = self.config.train
        scale = learning_rate_scale(self.step, self.total_steps, train.lr_decay)
        self.opt_g.param_groups[0]["lr"] = train.lr_g * scale
        self.opt_d.param_groups[0]["lr"] = train.lr_d * scale

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

    def collect_rows(self) -> list[dict[str, Any]]:
        """Metric rows of the steps since the last call; counts non-finite steps."""
        if not self._pending:
            return []
        # one all-reduce across ranks and one transfer per flush; note: the loop's one regular CPU-GPU sync point
        table = self.group.mean_across_ranks(torch.stack(self._pending)).cpu().tolist()
        rows = []
        for (step, when, epoch, rates), values in zip(self._pending_meta, table, strict=True):
            *stats, finite_flag = values
            finite = finite_flag > 0.999  # averaged over ranks: 1 only when every rank's step was finite
            self.bad_streak = 0 if finite else self.bad_streak + 1
            named = dict(zip(self.statistics, (float32_precision(value) for value in stats), strict=True))
            row = {
                "step": step,
                "t": round(when, 3),
                "epoch": round(epoch, 4),
                **{k: v for k, v in named.items() if k not in self.penalties or math.isfinite(v)},
            }
            if not finite:
                row["nonfinite"] = 1
            rows.append(row | rates)
        if self.device.type == "cuda":
            memory = round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3)
            for row in rows:
                row["gpu_mem_gb"] = memory
        self._pending.clear()
        self._pending_meta.clear()
        return rows

    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one: it makes the better samples."""
        return self.generator_ema or self.generator

    def sample_image(self):
        """The grid (or toy scatter) of the fixed noise batch."""
        return picture(self.sampling_generator, self.config, self.fixed_z)

    def checkpoint(self) -> Checkpoint:
        """What rank 0 writes; every rank must call it, since each one's noise stream goes in."""
        # "noise" is the file's name for rank 0's self.rng since format 1; other ranks' are noise.rankN
        streams = self.group.gather(self.rng.get_state().cpu())
        rng = {_stream_name(rank): state for rank, state in enumerate(streams)}
        rng["torch"] = torch.get_rng_state()
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
            world_size=self.group.world_size,
        )

    def restore(self, checkpoint: Checkpoint, path: Path) -> None:
        if checkpoint.exported:
            raise CheckpointError(exported_generator(path))
        load_weights(self.generator, checkpoint.generator, path, "generator")
        load_weights(self.discriminator, checkpoint.discriminator, path, "discriminator")
        if self.generator_ema is not None:
            load_weights(self.generator_ema, checkpoint.generator_ema or checkpoint.generator, path, "generator")
        for optimizer, state in ((self.opt_g, checkpoint.optimizer_g), (self.opt_d, checkpoint.optimizer_d)):
            optimizer.load_state_dict(state)
            _match_layouts(optimizer)
        stream = checkpoint.rng.get(_stream_name(self.group.rank))
        if stream is not None:  # saved by a group as large; from a smaller one, this rank's stream starts anew
            self.rng.set_state(stream)
        torch.set_rng_state(checkpoint.rng["torch"])
        self.batches.load_state_dict({k[8:]: v for k, v in checkpoint.rng.items() if k.startswith("batches.")})
        self.step = checkpoint.step


def _stream_name(rank: int) -> str:
    return "noise" if rank == 0 else f"noise.rank{rank}"


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
