"""Data-parallel training under torchrun: the process group, rank-0-only writes, agreed values.

`torchrun --nproc-per-node=N -m made_cli train CONFIG` starts N processes with WORLD_SIZE,
RANK and LOCAL_RANK set; each joins the group (gloo on CPU, NCCL on CUDA), trains on its shard
of every epoch (DistributedSampler) with DistributedDataParallel averaging the gradients, and
only rank 0 writes files. Without torchrun everything here is a no-op for one process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["SINGLE", "Dist", "from_env"]

CPU = torch.device("cpu")


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
        _settled(t, lambda: dist.all_reduce(t))
        return t.tolist()

    def max(self, value: float, device: torch.device) -> float:
        """The largest value over all ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        _settled(t, lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return float(t)

    def broadcast_tensor(self, tensor: torch.Tensor) -> None:
        """Overwrite ``tensor`` with rank 0's, in place; the caller keeps it alive."""
        if self.world > 1:
            _settled(tensor, lambda: dist.broadcast(tensor, src=0))

    def broadcast(self, value: str | None, device: torch.device = CPU) -> str | None:
        """Rank 0's string (or None) on every rank: its UTF-8 length (-1 for None), then its bytes."""
        if self.world == 1:
            return value
        data = value.encode() if self.main and value is not None else b""
        length = torch.tensor([len(data) if self.main and value is not None else -1], device=device)
        self.broadcast_tensor(length)
        if int(length) < 0:
            return None
        payload = torch.tensor(list(data), dtype=torch.uint8, device=device)
        if not self.main:
            payload = torch.zeros(int(length), dtype=torch.uint8, device=device)
        if int(length):
            self.broadcast_tensor(payload)
        return bytes(payload.cpu().tolist()).decode()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (at the end of a command)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Dist()
_RELEASE_TIMEOUT = 60.0  # seconds; a worker frees a finished work within microseconds


def _settled(tensor: torch.Tensor, collective: Callable[[], object]) -> None:
    """Run a collective on ``tensor``, then wait until the backend's threads have let go of it.

    A collective returns when the result is in, but gloo's worker thread frees its
    record of the work (which holds the tensor) a moment later. If Python drops the tensor
    first, that worker must take the GIL to free it; when the interpreter is already shutting
    down, Python ends the thread inside a C++ destructor and the process aborts ("terminate
    called without an active exception", SIGABRT: one torchrun in 6 to 24 here). Holding the
    tensor until its use count is back to ours means no worker ever needs the GIL for it.
    """
    ours = tensor._use_count()
    collective()
    deadline = time.monotonic() + _RELEASE_TIMEOUT
    while tensor._use_count() > ours and time.monotonic() < deadline:
        time.sleep(1e-4)


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
