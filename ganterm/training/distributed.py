"""The process group of a run trained by several processes, started by torchrun.

torchrun (`torch.distributed.run`) starts one worker per GPU (or per CPU
process with gloo) and sets RANK, WORLD_SIZE and LOCAL_RANK; `Group.from_env`
joins them. A run of one process has a group of one, whose collectives do
nothing, so the loop is written once for both.

Every collective here is called at the same point by every rank: once per
log interval for the statistics (`mean_across_ranks`), once per poll point
for control commands (`share_commands`), and once per checkpoint for the
RNG states (`gather`). None is called per step.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn  # before any group exists: see `Group.close`

from ganterm.run.control import Command

# How long a collective waits for a rank before the group gives up. Long enough for rank 0 to
# write a checkpoint, a sample grid or a quality measurement while the others wait at the next
# collective; a rank that dies is noticed sooner, by torchrun, which then ends the whole group.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 owns the run directory; the others train and stay silent."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device_type: str) -> Group:
        """Join the group torchrun described in the environment; a group of one without it."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def mean_across_ranks(self, table: torch.Tensor) -> torch.Tensor:
        """Each rank's per-step statistics, averaged over the ranks: means over the global batch."""
        if self.distributed:
            dist.all_reduce(table, op=dist.ReduceOp.SUM)
            table /= self.world_size
        return table

    def share_commands(self, commands: list[Command]) -> list[Command]:
        """Rank 0's commands (from control.jsonl) and any rank's stop (from a signal), for every rank."""
        if not self.distributed:
            return commands
        gathered: list[list[Command] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, commands)
        shared = list(gathered[0] or [])
        if not any(command["cmd"] == "stop" for command in shared):
            stops = [c for rank_commands in gathered[1:] for c in rank_commands or [] if c["cmd"] == "stop"]
            shared += stops[:1]
        return shared

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        """Leave the group; its gloo threads end when the last reference to it goes.

        Threads still alive at the interpreter's exit can abort a process whose training finished (SIGABRT,
        "terminate called without an active exception"): one letting go of a collective's tensors takes the
        GIL from the finalizing interpreter. torch.distributed.nn, which torch._dynamo imports with the first
        optimizer, takes the group of its first import as a default argument and would hold it to the end;
        hence its import at the top, before any group exists.
        """
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
