"""How many processes train a run, on how many machines: torchrun's options, checked, and where a node keeps its files.

Torch-free: the command that starts a run on many machines stays a light viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ganterm.errors import UserError
from ganterm.run.layout import RunDir


@dataclass(frozen=True)
class Scale:
    """How many processes train the run, with torchrun's names and meanings."""

    nproc_per_node: str = "1"  # a number, or "gpu" for one per visible GPU, as torchrun counts them
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    rdzv_timeout: int = 300

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node != "1" or self.nnodes > 1


def node_folder(run: RunDir, scale: Scale) -> Path:
    """Where a node other than the first keeps its config and log, inside the run's folder."""
    return run.path / "nodes" / str(scale.node_rank)


def worker_log(run: RunDir, scale: Scale) -> Path:
    return run.log if scale.node_rank == 0 else node_folder(run, scale) / "worker.log"


def scale_from_options(
    nproc_per_node: str, nnodes: int, node_rank: int, rdzv_endpoint: str | None, rdzv_id: str | None, name: str | None
) -> Scale:
    """torchrun's options, checked: one sentence for each way they can be wrong."""
    if nproc_per_node == "auto":
        processes = "gpu"  # counted by torchrun where the workers start, so this viewer never loads torch
    elif nproc_per_node.isdigit() and int(nproc_per_node) >= 1:
        processes = str(int(nproc_per_node))
    else:
        raise UserError(f"--nproc-per-node {nproc_per_node!r} must be a whole number of at least 1, or auto")
    if node_rank >= nnodes:
        raise UserError(f"--node-rank {node_rank} must be below --nnodes {nnodes} (ranks count from 0)")
    if nnodes > 1 and (not rdzv_endpoint or ":" not in rdzv_endpoint):
        raise UserError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT, the same on every machine")
    return Scale(processes, nnodes, node_rank, rdzv_endpoint or "", rdzv_id or name or "")
