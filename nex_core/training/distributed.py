"""Multi-process training with ``torch.distributed`` (DDP), launched by ``torchrun``.

Every rank draws the same global ray batch from the same seeded generator and keeps its own share of the
L-shaped triples, so ``world_size`` processes with ``rays`` rays in all follow the curve of one process
with ``rays`` rays: DDP averages the gradients of equal-sized shards, which is the gradient of the global
mean. Because the sampler state is the same on every rank, a checkpoint resumes with any number of ranks.
Only rank 0 writes config, events and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from ..io.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (a single process when absent)."""
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError:
            raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU) if running under torchrun."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def rank_device(info: DistInfo, device: torch.device) -> torch.device:
    """Each rank uses its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def shard_triples(n_rays: int, info: DistInfo) -> slice:
    """This rank's share of a triple-interleaved batch of ``n_rays`` rays, as a slice over triples.

    Shards are equal-sized (a remainder of triples is dropped) so averaged gradients equal the global mean.
    """
    per_rank = (n_rays // 3) // info.world_size
    if per_rank < 1:
        raise ConfigError(f"train.rays = {n_rays} is too few for {info.world_size} processes "
                          f"(each needs at least one L-shaped triple)")
    return slice(info.rank * per_rank, (info.rank + 1) * per_rank)


def mean_across_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a scalar over all ranks (the value itself in one process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any rank (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap_model(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when running with several ranks."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def shutdown(info: DistInfo, wait_for_all: bool = False) -> None:
    """Leave the process group (after a barrier when ``wait_for_all``)."""
    if info.enabled and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()
