"""The global batch of a multi-worker run, as the contrastive losses see it.

`gather` concatenates every worker's rows in rank order; its backward sends each worker the
gradient of *all* workers' losses with respect to its rows (our autograd function, as
solo-learn's: torch's functional all-gather has no gradient in some versions). A loss that
averages over its *local* rows against the *gathered* columns then has, once DDP averages the
parameter gradients over the W workers, the single-process gradient on the global batch:
(1/W) * sum_k mean_{rows of worker k} = mean over all rows. One worker communicates nothing.
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
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()  # all_reduce works in place; autograd owns grad
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def gather(rows: Tensor) -> Tensor:
    """Every worker's `rows` in rank order, differentiable; every worker calls it, same shape."""
    return rows if rank_and_world()[1] == 1 else _Gather.apply(rows.contiguous())


def own_columns(local_rows: int, device: torch.device) -> Tensor:
    """Indices of this worker's rows in a gathered batch: rank * n, ..., rank * n + n - 1."""
    return rank_and_world()[0] * local_rows + torch.arange(local_rows, device=device)
