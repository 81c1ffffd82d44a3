"""The metrics and states a run records, named once for the loop, the viewers and the listing.

A training step reports its statistics by these names; the dashboard gives
the `PANELS` their own plots and every other number a plot of its own; the
listing and progress lines label them as `LABELS` says. Adding a statistic:
report it from the step under a new name (it then gets a plot of its own),
and list it here if it belongs in a shared panel or needs a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ganterm.run.text import visible

# What one training step of ganterm's own loop measures, each a mean over the batch.
STEP_STATISTICS = (
    "loss_d",  # D's loss on real plus fake
    "loss_d_real",
    "loss_d_fake",
    "loss_g",
    "d_x",  # D(x): D's mean probability that a real image is real
    "d_g_z1",  # D(G(z)) on the fake batch as D is updated
    "d_g_z2",  # D(G(z)) on the same batch as G is updated
    "grad_norm_d",
    "grad_norm_g",
    "diversity",  # mean pairwise distance of the fakes over that of the reals
)
BOOKKEEPING = ("step", "t", "epoch")  # every row's coordinates, never plotted as values
RATES = ("img_per_s", "lr_d", "lr_g", "gpu_mem_gb")  # shown in the header, not plotted

# Quality measurements, most telling first: the dashboard orders their panels so.
QUALITY_FIRST = (
    "fd_classifier", "class_kl", "modes_covered", "mode_kl", "hq_share", "precision", "recall", "diversity",
)  # fmt: skip
# Every number a quality measurement of ganterm's loop may write (a row of its own at its step).
QUALITY_MEASURES = (
    "fd_classifier",
    "class_kl",
    "class_coverage",
    "classifier_confidence",
    "precision",
    "recall",
    "modes_covered",
    "modes_covered_20",
    "modes_total",
    "hq_share",
    "mode_kl",
    "class_kl_red",
    "class_kl_green",
    "class_kl_blue",
)

# Tidy "section/name" tags for tools that group by section (TensorBoard): ganterm's own numbers.
# Quality measures go under quality/; a name of a user's loop is kept as it is.
TAGS = {
    "epoch": "progress/epoch",
    "loss_d": "loss/d",
    "loss_g": "loss/g",
    "loss_d_real": "loss/d_real",
    "loss_d_fake": "loss/d_fake",
    "d_x": "D/x",
    "score_gap": "D/score_gap",
    "real_above_margin": "D/real_above_margin",
    "fake_below_margin": "D/fake_below_margin",
    "gp": "penalty/gp",
    "r1": "penalty/r1",
    "r2": "penalty/r2",
    "d_g_z1": "D/G(z)",
    "d_g_z2": "D/G(z)_at_G_step",
    "grad_norm_d": "grad_norm/d",
    "grad_norm_g": "grad_norm/g",
    "diversity": "samples/diversity",
    "img_per_s": "speed/img_per_s",
    "lr_d": "lr/d",
    "lr_g": "lr/g",
    "gpu_mem_gb": "memory/gpu_gb",
    "nonfinite": "health/nonfinite_step",
}

LABELS = {
    "d_x": "D(x)",
    "d_g_z1": "D(G(z))",
    "d_g_z2": "D(G(z)) at G's step",
    "loss_d_real": "real",
    "loss_d_fake": "fake",
    "grad_norm_d": "D",
    "grad_norm_g": "G",
    "img_per_s": "img/s",
}


@dataclass(frozen=True)
class Panel:
    """A plot shared by several metrics: its title, the metrics it draws, and any reference lines.

    The D panel's title and lines here are a probability D's; the dashboard asks the runs' loss
    family (`ganterm.families`) for theirs.
    """

    key: str
    title: str
    metrics: tuple[str, ...]
    references: tuple[float, ...] = ()
    log_scale_allowed: bool = True


PANELS = (
    Panel("losses", "D and G loss", ("loss_d", "loss_g")),
    Panel("d_outputs", "D(x), D(G(z)) · 0.5 = equilibrium", ("d_x", "d_g_z1", "d_g_z2"), references=(0.5,)),
    Panel("grad_norms", "gradient norms", ("grad_norm_d", "grad_norm_g")),
    Panel("d_losses", "D's loss on real and on fake images", ("loss_d_real", "loss_d_fake")),
)
IN_PANELS = frozenset(name for panel in PANELS for name in panel.metrics)
# Columns the dashboard does not plot: coordinates, and rates (the header shows those).
NOT_PLOTTED_ALONE = frozenset({*BOOKKEEPING, *RATES})

# The states a writer records in status.json, the two a viewer derives (stalled, lost), and a read-only run's.
STATE_STYLE = {
    "running": "green",
    "paused": "yellow",
    "stalled": "bold yellow",
    "starting": "cyan",
    "finished": "blue",
    "stopped": "magenta",
    "failed": "bold red",
    "lost": "bold red",
    "live": "green",  # a run another tool writes (read-only): its files changed within the last minutes
    "idle": "blue",  # ... or not
}


def label(name: str) -> str:
    """How a metric is named on screen: a user's or another tool's name with its control characters shown."""
    return LABELS.get(name) or visible(name)


def tag(name: str) -> str:
    """The tidy tag of a metric: `loss/d` for loss_d, `quality/precision` for precision, a user's name as is.

    A user's name that is one of those tags (a loop logging `loss/d` beside `loss_d`) goes under `own/`:
    TensorBoard would draw the two as one series.
    """
    if name in TAGS:
        return TAGS[name]
    if name in QUALITY_MEASURES:
        return f"quality/{name}"
    return f"own/{name}" if name in _TIDY_TAGS else name


_TIDY_TAGS = frozenset(TAGS.values()) | {f"quality/{name}" for name in QUALITY_MEASURES}


def column_order(names: Iterable[str]) -> list[str]:
    """Columns of an exported table: the coordinates, ganterm's statistics, rates, quality, then the rest as met."""
    known = (*BOOKKEEPING, *STEP_STATISTICS, *RATES, *QUALITY_MEASURES)
    present = dict.fromkeys(names)
    return [name for name in known if name in present] + [name for name in present if name not in known]


def stats_line(row: Mapping[str, Any]) -> str:
    """'loss_d 0.693  loss_g 0.702  D(x) 0.50  D(G(z)) 0.49  612 img/s': the worker log's and the followers'.

    D's outputs are probabilities: two digits say enough.
    """
    parts = [
        f"{label(name)} {row[name]:.{digits}f}"
        for name, digits in (("loss_d", 3), ("loss_g", 3), ("d_x", 2), ("d_g_z1", 2))
        if isinstance(row.get(name), (int, float))
    ]
    if isinstance(row.get("img_per_s"), (int, float)):
        parts.append(f"{row['img_per_s']:.0f} img/s")
    return "  ".join(parts)
