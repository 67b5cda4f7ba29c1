"""Fig. 3a's batch B inside the optimiser's batch: batch norm within groups of B rows.

For a batch B = 4096 / N the paper keeps every setting of batch 4096 and averages the gradients
of N batches of B, computed in parallel [P §5 "Batch size"]: what changes with B is only what a
batch computes by itself, its BN statistics and its contrastive negatives (`losses.py`,
`group_size`). A worker holding n rows splits them into n / B groups (B <= n); a larger group
spans B / n whole workers and is synchronised over their process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class GroupBatchNorm(_BatchNorm):
    """A BatchNorm whose training statistics are those of each group of `group_size` rows.

    Within a worker (no `process_group`) each group is one BatchNorm call, so the running
    statistics take one momentum step per group, in order, as N sequential batches would. A
    group spanning workers on the CPU (gloo), where torch's SyncBatchNorm does not run (nor DDP
    with it), takes its statistics from an autograd-aware all-gather of each worker's mean and
    variance over `process_group`. Eval mode uses the running statistics.
    """

    def __init__(self, bn: _BatchNorm, group_size: int, process_group: dist.ProcessGroup | None):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.group_size, self.process_group = group_size, process_group
        self.weight, self.bias = bn.weight, bn.bias  # the same tensors: state_dict keys unchanged
        self.running_mean, self.running_var = bn.running_mean, bn.running_var
        self.num_batches_tracked = bn.num_batches_tracked
        self.train(bn.training)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each group of rows by its own statistics (training), else as BatchNorm."""
        if not self.training:
            return super().forward(x)
        if self.process_group is None:
            return torch.cat([_BatchNorm.forward(self, rows) for rows in x.split(self.group_size)])
        var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
        stats = collectives.all_gather_single(torch.stack([mean, var]), 0, self.process_group)
        means, variances = stats.view(-1, 2, x.shape[1]).unbind(1)  # one row per worker
        mean = means.mean(0)
        var = (variances + (means - mean) ** 2).mean(0)  # equal rows per worker
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum
                if factor is None:  # cumulative average, as BatchNorm's momentum=None
                    factor = 1.0 / float(self.num_batches_tracked)
                rows = x.numel() // x.shape[1] * means.shape[0]
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * rows / (rows - 1), factor)
        shape = (1, -1, *[1] * (x.dim() - 2))
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def within_groups(method: nn.Module, group_size: int, per_worker: int,
                  device: torch.device) -> nn.Module:
    """`method` with BN statistics and contrastive negatives within groups of `group_size`
    rows (`data.group_size` > 0; `per_worker` rows per worker), converted in place.

    Every BatchNorm (encoder, heads, target) becomes a `GroupBatchNorm`, or on CUDA, for a
    group of several workers, torch's SyncBatchNorm over their process group; the losses read
    `method.group_size`. Every rank creates every process group, in the same order, as
    `torch.distributed.new_group` requires.
    """
    members, process_group = group_size // per_worker, None
    if members > 1:
        rank = dist.get_rank()
        for first in range(0, dist.get_world_size(), members):
            group = dist.new_group(list(range(first, first + members)))
            process_group = group if first <= rank < first + members else process_group
    if process_group is not None and device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method, process_group)
    for module in list(method.modules()):
        for name, child in module.named_children():
            if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                setattr(module, name, GroupBatchNorm(child, group_size, process_group))
    method.group_size = group_size
    return method
