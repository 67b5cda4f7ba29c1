"""The global batch of a multi-worker run, as the contrastive losses see it.

`gather` concatenates every worker's rows in rank order, and its backward sends each worker
the gradient of *all* workers' losses with respect to its rows (an all-gather whose backward
sums the gradient over workers and keeps this worker's rows). A loss that averages over its
*local* rows against the *gathered* columns then has, once DDP averages the parameter gradients
over the W workers, exactly the gradient of the single-process loss on the global batch:
(1/W) * sum_k mean_{rows of worker k} = mean over all rows. Our own autograd function (as
solo-learn's `gather`), so it holds on every torch version and backend: torch's functional
all-gather returned no gradient in some versions. Without a process group, or with one
worker, nothing is communicated.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this worker; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Gather(torch.autograd.Function):
    """All-gather forward; backward: the all-reduced (summed) gradient of this worker's rows."""

    @staticmethod
    def forward(ctx, rows: Tensor) -> Tensor:
        parts = [torch.empty_like(rows) for _ in range(rank_and_world()[1])]
        dist.all_gather(parts, rows)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()  # all_reduce works in place; autograd owns grad
        dist.all_reduce(grad)
        rank, world = rank_and_world()
        return grad.chunk(world)[rank]


def gather(rows: Tensor) -> Tensor:
    """Every worker's `rows` concatenated in rank order, differentiable back to each worker.

    Every worker must call it, with the same shape, and run its backward.
    """
    if rank_and_world()[1] == 1:
        return rows
    return _Gather.apply(rows.contiguous())


def own_columns(local_rows: int, device: torch.device) -> Tensor:
    """Indices of this worker's rows in a gathered batch: rank * n, ..., rank * n + n - 1."""
    rank, _ = rank_and_world()
    return torch.arange(rank * local_rows, (rank + 1) * local_rows, device=device)
