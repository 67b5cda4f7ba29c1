"""What the loops need of their fellow workers beyond DDP's gradient all-reduce: a scalar or
counts summed or averaged over them, and BatchNorm statistics over the global batch. One
worker (a plain process, a Tune trial) communicates nothing."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _grouped(world: int) -> bool:
    return world > 1 and dist.is_available() and dist.is_initialized()


def mean_over_workers(value: torch.Tensor, world: int) -> float:
    """A scalar averaged over the workers (all-reduce), as a float on every worker."""
    if _grouped(world):
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def sum_over_workers(values: torch.Tensor, device: torch.device, world: int) -> torch.Tensor:
    """Counts summed over the workers (on the device under NCCL, on the CPU under gloo)."""
    if not _grouped(world):
        return values
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    values = values.to(comm)
    dist.all_reduce(values)
    return values.cpu()


def with_sync_batchnorm(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """BatchNorm statistics over the global batch on several GPUs (SyncBN, as SimCLR's and
    DeepMind's multi-device BYOL runs compute them), so per-GPU batch size does not change the
    normalisation; unchanged on the CPU (gloo runs are tests and miniatures) or one worker."""
    if device.type == "cuda" and world > 1:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
