"""Data parallel training with PyTorch's own engine, under ``torchrun``.

When the launcher sets WORLD_SIZE > 1, :func:`setup` joins the process group (gloo on CPU,
nccl on CUDA). Every rank draws the same global batch from the same seeded stream and trains
on its own contiguous shard; DistributedDataParallel averages the gradients, so N processes
follow the run of one process with the same global batch. Rank 0 alone logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from longshort.tasks import Batch


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: Batch) -> Batch:
        """This rank's contiguous slice of a global batch."""
        size = batch.y.shape[0]
        if size % self.world:
            raise ValueError(f"batch size {size} must be divisible by the {self.world} processes")
        part = size // self.world
        sl = slice(self.rank * part, (self.rank + 1) * part)
        return Batch(batch.x[sl], batch.y[sl], None if batch.lengths is None else batch.lengths[sl])

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true on every rank when it is true on any (so all ranks stop together);
        one all-reduce for all of them."""
        if self.world == 1:
            return flags
        t = torch.tensor([1.0 if f else 0.0 for f in flags])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())


def setup(device: str = "cpu") -> Group:
    """Join the process group torchrun describes in the environment; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def is_main(device: str = "cpu") -> bool:
    """Whether this process logs, saves and reports: the only one, or rank 0 under torchrun
    (joining the group as :func:`setup` does, if not joined yet)."""
    return setup(device).main
