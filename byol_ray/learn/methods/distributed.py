"""The global batch of a multi-worker run, as the contrastive losses see it.

`gather` concatenates every worker's rows in rank order, and its backward sends each worker
the gradient of *all* workers' losses with respect to its rows (an all-gather whose backward
is a summing reduce-scatter). A loss that averages over its *local* rows against the
*gathered* columns then has, once DDP averages the parameter gradients over the W workers,
exactly the gradient of the single-process loss on the global batch:
(1/W) * sum_k mean_{rows of worker k} = mean over all rows. Without an initialised process
group, or with one worker, nothing is communicated.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this worker; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(rows: Tensor) -> Tensor:
    """Every worker's `rows` concatenated in rank order, differentiable back to each worker.

    Every worker must call it, with the same shape. `all_gather_single` is the autograd-aware
    all-gather that replaces the deprecated `torch.distributed.nn.functional.all_gather`.
    """
    if rank_and_world()[1] == 1:
        return rows
    return collectives.all_gather_single(rows.contiguous(), 0, dist.group.WORLD)


def own_columns(local_rows: int, device: torch.device) -> Tensor:
    """Indices of this worker's rows in a gathered batch: rank * n, ..., rank * n + n - 1."""
    rank, _ = rank_and_world()
    return torch.arange(rank * local_rows, (rank + 1) * local_rows, device=device)
