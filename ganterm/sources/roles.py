"""Which of another tool's scalar tags is which of ganterm's roles (`loss_d`, `d_x`, ...), and the run's loss family.

A run that TensorBoard's writer or StyleGAN's loop wrote names its numbers its
own way; the shared panels, the loss family and the health checks ask for
ganterm's names. `KNOWN_TAGS` maps the common names to them, matched without
regard to case or to the separators `/ _ - . space` (`Loss_D`, `loss/D` and
`loss-d` are one name); every other tag keeps its own name and gets a panel of
its own. A user fixes a wrong guess with `ganterm-roles.toml` beside the run
(or `--roles FILE`): tags to roles or "ignore", and the loss family.

The family is what says how to read D's outputs, so the guess never misreads:
StyleGAN's `Loss/scores/*` are raw logits of its non-saturating loss (the
`logit` family); a SummaryWriter loop's `D(x)` is a probability only while
every D output it logged lies in [0, 1] (what the PyTorch DCGAN tutorial's
sigmoid means do); anything else reads as `raw`, whose D outputs no check
interprets until the file names the loss.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganterm.config import read_toml
from ganterm.errors import UserError
from ganterm.families import SERIES, accepted_names, family_named
from ganterm.run.schema import QUALITY_MEASURES, RATES, STEP_STATISTICS, TAGS

ROLES_FILE = "ganterm-roles.toml"  # looked for in the run's folder
IGNORE = "ignore"
RESERVED = ("step", "t")  # every row's coordinates, never a tag's name
D_OUTPUTS = ("d_x", "d_g_z1", "d_g_z2")
# every role a tag may take: ganterm's own numbers, as its loop and `ganterm.Run` log them
ROLES = frozenset({*STEP_STATISTICS, *SERIES, *RATES, *QUALITY_MEASURES, "epoch", "nonfinite"})

_SEPARATORS = re.compile(r"[/_\-. ]+")


def normal(tag: str) -> str:
    """The form tags are matched in: lower case, each run of `/ _ - . space` one `_` (`Loss/D` → `loss_d`)."""
    return _SEPARATORS.sub("_", tag.strip().lower()).strip("_")


# Names common in SummaryWriter loops, StyleGAN's, and ganterm's own (its names, and the tags its export
# writes: schema.TAGS, quality/<name>). Written as the loops write them; matched in `normal` form.
_COMMON = {
    "loss_d": ("loss/D", "Loss_D", "Loss/D", "loss_D", "d_loss", "D/loss", "D_loss", "errD", "lossD", "loss/dis",
               "loss/discriminator", "discriminator_loss", "dis_loss", "Loss/D/loss"),
    "loss_g": ("loss/G", "Loss_G", "Loss/G", "loss_G", "g_loss", "G/loss", "G_loss", "errG", "lossG", "loss/gen",
               "loss/generator", "generator_loss", "gen_loss", "Loss/G/loss"),
    "loss_d_real": ("errD_real", "d_loss_real", "D/loss_real", "loss_D_real", "loss/D_real"),
    "loss_d_fake": ("errD_fake", "d_loss_fake", "D/loss_fake", "loss_D_fake", "loss/D_fake"),
    "d_x": ("D(x)", "D_x", "D/real", "D(x)_mean"),
    "d_g_z1": ("D(G(z))", "D_G_z", "D_G_z1", "D/fake", "D(G(z1))"),
    "d_g_z2": ("D_G_z2", "D(G(z2))"),
    "grad_norm_d": ("D/grad_norm", "grad_norm_D", "d_grad_norm"),
    "grad_norm_g": ("G/grad_norm", "grad_norm_G", "g_grad_norm"),
    "score_gap": ("wasserstein", "wasserstein_distance", "wasserstein_estimate", "W_distance", "em_distance"),
    "gp": ("gradient_penalty", "loss/gp", "Loss/gp", "D/gp", "grad_penalty"),
    "r1": ("r1_reg", "loss/r1"),
    "r2": ("r2_reg", "loss/r2"),
    "lr_d": ("lr/D", "D/lr", "lr_D"),
    "lr_g": ("lr/G", "G/lr", "lr_G"),
    "gpu_mem_gb": ("Resources/peak_gpu_mem_gb",),
}  # fmt: skip
# StyleGAN's `Loss/scores/*` are mean raw logits, read by the `logit` family; `Loss/scores/fake` averages
# D's fake logits of both phases (D's step and G's), so it is D(G(z)) as D is updated only roughly.
# Its `Loss/r1_penalty` is ‖∇D(x)‖² before the γ/2 weight, not ganterm's weighted r1: it keeps a panel
# of its own, as do `Loss/signs/real` (ADA's overfitting measure), `Progress/augment` and `Metrics/*`.
_STYLEGAN = {"Loss/scores/real": "d_x", "Loss/scores/fake": "d_g_z1"}


def _known_tags() -> dict[str, str]:
    known = {normal(name): name for name in ROLES}
    known |= {normal(tag): name for name, tag in TAGS.items()}
    known |= {normal(f"quality/{name}"): name for name in QUALITY_MEASURES}
    known |= {normal(tag): role for role, tags in _COMMON.items() for tag in tags}
    known |= {normal(tag): role for tag, role in _STYLEGAN.items()}
    return known


KNOWN_TAGS = _known_tags()  # normal(tag) -> role


@dataclass(frozen=True)
class Roles:
    """A run's mapping: the user's fixes (exact tags, before the table), and the loss the user named."""

    overrides: Mapping[str, str] = field(default_factory=dict)  # tag -> role, or IGNORE
    loss: str | None = None
    source: Path | None = None  # the file they came from

    def role(self, tag: str) -> str | None:
        """The name a tag's points go under: its role, its own tag when it has none, None when ignored."""
        name = self.overrides.get(tag) or KNOWN_TAGS.get(normal(tag), tag)
        return None if name == IGNORE else name


class TagNames:
    """One run's tags as they come, each given its name once; the first tag to claim a role keeps it.

    A loop logging two tags of one role (`loss/D` and `errD`) would otherwise draw two series as one;
    the second keeps its own tag, and keeps it for the run's life, so a panel never changes hands.
    """

    def __init__(self, roles: Roles) -> None:
        self.roles = roles
        self._names: dict[str, str | None] = {}
        self._claimed: set[str] = set()

    def name(self, tag: str) -> str | None:
        if tag in self._names:
            return self._names[tag]
        name = self.roles.role(tag)
        if name is not None and name != tag and name in self._claimed:
            name = tag
        if name in RESERVED:  # a loop's own `step` or `t` would be read as every row's coordinates
            name = f"own/{name}"
        if name is not None:
            self._claimed.add(name)
        self._names[tag] = name
        return name

    def columns(self, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Raw tags' (steps, values) under their names; ignored tags left out."""
        return {name: columns for tag, columns in series.items() if (name := self.name(tag)) is not None}


def load_roles(path: Path) -> Roles:
    """A roles file: `loss = "wgan-gp"` and a `[roles]` table of tag = role or "ignore"; one sentence if bad."""
    mapping = read_toml(path, "roles file")
    unknown = sorted(set(mapping) - {"loss", "roles"})
    if unknown:
        raise UserError(f"roles file {str(path)!r} may hold only `loss` and a [roles] table, not {unknown[0]!r}")
    loss = mapping.get("loss")
    if loss is not None:
        try:
            family_named(loss)
        except UserError:
            raise UserError(f"roles file {str(path)!r}: loss must be one of {accepted_names()}, not {loss!r}") from None
    overrides = mapping.get("roles", {})
    if not isinstance(overrides, dict):
        raise UserError(f"roles file {str(path)!r}: [roles] must be a table of tag = role, not {overrides!r}")
    for tag, role in overrides.items():
        if role != IGNORE and role not in ROLES:
            raise UserError(
                f"roles file {str(path)!r}: tag {tag!r} must map to {IGNORE!r} or one of "
                f"{', '.join(sorted(ROLES))}, not {role!r}"
            )
    return Roles(dict(overrides), loss, path)


def roles_for(folder: Path, given: Path | None = None) -> Roles:
    """The roles of the run in `folder`: the file given (`--roles`), else its own ganterm-roles.toml, else none."""
    if given is not None:
        return load_roles(given)
    beside = folder / ROLES_FILE
    return load_roles(beside) if beside.is_file() else Roles()


@dataclass
class DReadings:
    """What D's outputs logged so far say of the loss: whether any were logged, and whether all lay in [0, 1].

    Kept up as points arrive, so a long history is looked at once, not again at each poll.
    """

    logged: bool = False
    within_unit: bool = True

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if len(finite):
            self.logged = True
            self.within_unit = self.within_unit and bool(((finite >= 0) & (finite <= 1)).all())


def guess_family(kind: str, roles: Roles, d_outputs: Iterable[np.ndarray]) -> str:
    """The loss family of a run that did not record one: the user's word, else a reading that never misreads.

    `d_outputs`: the values logged so far under D's output roles.
    """
    readings = DReadings()
    for values in d_outputs:
        readings.add(values)
    return family_from(kind, roles, readings)


def family_from(kind: str, roles: Roles, readings: DReadings) -> str:
    """`guess_family` over readings kept up as points arrive."""
    if roles.loss is not None:
        return family_named(roles.loss).name
    if kind == "stylegan":
        return "logit"
    return "probability" if readings.logged and readings.within_unit else "raw"


def family_reason(kind: str, roles: Roles, family: str) -> str:
    """Why a run reads as `family`, in words, for the docs' promise that the guess is said, not hidden."""
    if roles.loss is not None:
        return f"loss = {roles.loss!r} in {roles.source}"
    return {
        "logit": "StyleGAN's loop logs D's raw logits (Loss/scores/*) of its non-saturating loss",
        "probability": "every D output logged lies in [0, 1], as sigmoid means do",
    }.get(family, f"the {kind} run names no loss; say it with `loss = ...` in {ROLES_FILE}")
