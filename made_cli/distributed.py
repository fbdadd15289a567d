"""Data-parallel training under torchrun: the process group, rank-0-only writes, agreed values.

`torchrun --nproc-per-node=N -m made_cli train CONFIG` starts N processes with WORLD_SIZE,
RANK and LOCAL_RANK set; each joins the group (gloo on CPU, NCCL on CUDA), trains on its shard
of every epoch (DistributedSampler) with DistributedDataParallel averaging the gradients, and
only rank 0 writes files. Without torchrun everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["SINGLE", "Dist", "from_env"]


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the group."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum floats over all ranks (identity for one process), so every rank decides alike."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def max(self, value: float, device: torch.device) -> float:
        """The largest value over all ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def broadcast(self, value: str | None) -> str | None:
        """Rank 0's value on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (at the end of a command)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Dist()


def from_env(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; returns this rank and its device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size()), device
