"""One training micro-batch, and the optimiser step that ends a gradient-accumulation group.

Micro-batch k of the run (counted over epochs) belongs to optimiser step k // N, N =
`train.accumulate_steps`: each adds the gradient of loss / N, and the N-th steps the optimiser
and the caller then updates the target [P Fig. 3a]. The micro-batches before the N-th run
under DDP's `no_sync()`, so the gradients are all-reduced once per optimiser step. Groups run
across epoch boundaries (a group that an epoch's end cuts carries over into the next epoch,
as in DeepMind's step-based loop); `average_pending_gradients` lets a checkpoint taken inside
a group keep the micro-batches already done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def train_micro_batch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    views: tuple[Tensor, Tensor],
    batch_index: int,
    accumulate: int,
    lr_of_step: Callable[[int], float],
    amp: bool = False,
) -> tuple[dict[str, Tensor], int | None]:
    """Forward and backward one micro-batch; on the last of its group, step the optimiser.

    `batch_index` counts micro-batches from the start of the run; `lr_of_step(k)` is the
    learning rate of optimiser step k. Returns the model's outputs and the index of the step
    taken (None when the group is not complete yet).
    """
    completes_group = (batch_index + 1) % accumulate == 0
    no_sync = getattr(model, "no_sync", None)  # DistributedDataParallel only
    local_only = no_sync() if no_sync and not completes_group else contextlib.nullcontext()
    with local_only:  # forward and backward both inside, as DDP requires
        device = views[0].device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            outputs = model(*views)
        (outputs["loss"] / accumulate).backward()
    if not completes_group:
        return outputs, None
    step = batch_index // accumulate
    for group in optimizer.param_groups:
        group["lr"] = lr_of_step(step)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return outputs, step


def average_pending_gradients(module: nn.Module) -> list[Tensor | None]:
    """The gradients of an unfinished group, averaged over the workers (call on every worker).

    Under `no_sync` each worker holds its own sum; averaging them now gives every worker what
    DDP's all-reduce at the group's end would have averaged, so a checkpoint can store them
    once and a resumed run can continue the group (`restore_gradients`).
    """
    grads = [p.grad for p in module.parameters()]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for grad in grads:
            if grad is not None:
                dist.all_reduce(grad)
                grad /= dist.get_world_size()
    return [None if g is None else g.detach().cpu() for g in grads]


def restore_gradients(module: nn.Module, grads: list[Tensor | None]) -> None:
    """Put the gradients of `average_pending_gradients` back on `module`'s parameters."""
    for p, grad in zip(module.parameters(), grads, strict=True):
        p.grad = None if grad is None else grad.to(p.device, p.dtype)
