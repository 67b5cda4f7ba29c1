"""Many linear heads trained together on one frozen encoder's features: every learning rate of
the linear protocol [P App. C.1] on each of its fit sets, the encoder run once per batch (as
DINOv2's `eval/linear.py`, `setup_linear_classifiers`, trains its grid of heads).

Data order. One pass iterates over the union of the fit sets. Each epoch is one seeded
permutation of it (`DistributedSampler(shuffle=True, seed)`, epoch `e`), cut into global
batches of `batch_size` consecutive items; with W workers each worker holds the strided
1/W of each global batch (its own DistributedSampler shard, batch `batch_size // W`). A head
fitted on a fit set sees, of each global batch, exactly the samples of its set, and takes one
optimiser step on them (none on a batch holding no sample of its set). So a head equals the
head a separate fit gives when that fit runs over the same global batches restricted to its
set: the same features, the same learning-rate schedule (per step of the pass), and:

- loss: cross-entropy averaged over the set's samples of the global batch (each worker sums
  its samples' losses and divides by the global count; the gradients are summed over workers);
- `feature_norm`: BatchNorm without affine parameters over the set's samples of the global
  batch (sums all-reduced, as SyncBatchNorm), running statistics as `nn.BatchNorm1d`'s
  (momentum 0.1, unbiased running variance), used when scoring;
- SGD, Nesterov momentum 0.9, the head's rate decayed to 0 by a per-step cosine over the
  pass's `total_steps`; zero-initialised weights [P App. C.1].

Pure torch: `torch.distributed` when a process group is initialised, nothing of Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

BN_MOMENTUM = 0.1  # nn.BatchNorm1d's default
BN_EPS = 1e-5  # nn.BatchNorm1d's default
MOMENTUM = 0.9  # SGD Nesterov momentum [P App. C.1]


@dataclass(frozen=True)
class HeadSpec:
    """One head: its peak learning rate and the fit set (a row of `members`) it learns from."""

    lr: float
    fit_set: int


def cosine_lr(peak: float, step: int, total: int) -> float:
    """The rate at `step` of a per-step cosine decay from `peak` to 0 over `total` steps."""
    return peak * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))


class LinearHeads(nn.Module):
    """Linear classifiers on the same features, each with its own SGD-Nesterov optimiser and
    cosine schedule, each fitted on its fit set's samples of every batch (module docstring)."""

    def __init__(self, dim: int, num_classes: int, specs: list[HeadSpec], members: Tensor,
                 total_steps: int, feature_norm: bool = False, weight_decay: float = 0.0):
        super().__init__()
        if members.dtype != torch.bool or members.dim() != 2:
            raise ValueError("members: a (fit sets, dataset size) bool tensor")
        if any(not 0 <= s.fit_set < len(members) for s in specs):
            raise ValueError(f"a head's fit_set is not a row of members ({len(members)} rows)")
        self.specs, self.total_steps, self.feature_norm = list(specs), total_steps, feature_norm
        self.register_buffer("members", members, persistent=False)
        self.layers = nn.ModuleList(nn.Linear(dim, num_classes) for _ in specs)
        for layer in self.layers:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        sets = len(members)
        self.register_buffer("running_mean", torch.zeros(sets, dim))
        self.register_buffer("running_var", torch.ones(sets, dim))
        self.optimizers = [torch.optim.SGD(layer.parameters(), lr=s.lr, momentum=MOMENTUM,
                                           nesterov=True, weight_decay=weight_decay)
                           for layer, s in zip(self.layers, specs, strict=True)]
        self.step_count = 0

    def train_step(self, features: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
        """One optimiser step of every head on this worker's share of a global batch
        (`indices`: the samples' positions in the dataset that `members` covers); every worker
        calls it once per global batch. Each head's loss on the batch (global mean; NaN where
        its set had no sample), detached."""
        features = features.detach().flatten(1).float()
        mask = self.members[:, indices.to(self.members.device)].to(features.dtype)  # (S, b)
        stats = [mask.sum(1, keepdim=True)]
        if self.feature_norm:
            wide = features.double()
            stats += [mask.double() @ wide, mask.double() @ wide.square()]
        stats = _all_reduce(torch.cat([s.double() for s in stats], dim=1))
        counts = stats[:, 0]
        inputs = self._normalised_for_training(features, stats) if self.feature_norm else None
        losses = torch.full((len(self.specs),), float("nan"), device=features.device)
        total = torch.zeros((), device=features.device)
        for h, (layer, spec) in enumerate(zip(self.layers, self.specs, strict=True)):
            n = counts[spec.fit_set]
            if n == 0:
                continue
            x = inputs[spec.fit_set] if inputs is not None else features
            per_sample = F.cross_entropy(layer(x), labels, reduction="none")
            loss = (per_sample * mask[spec.fit_set]).sum() / n.to(features.dtype)
            losses[h] = loss.detach()
            total = total + loss
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        if total.requires_grad:
            total.backward()
        self._sum_gradients_over_workers()
        for optimizer, spec in zip(self.optimizers, self.specs, strict=True):
            if counts[spec.fit_set] == 0:
                continue
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(spec.lr, self.step_count, self.total_steps)
            optimizer.step()
        self.step_count += 1
        return _all_reduce(losses.double()).float() if _distributed() else losses

    def _normalised_for_training(self, features: Tensor, stats: Tensor) -> list[Tensor | None]:
        """Per fit set: the features normalised by the set's batch statistics (None where the
        batch holds none of it); the running statistics updated as nn.BatchNorm1d does."""
        dim = features.shape[1]
        out: list[Tensor | None] = []
        for s in range(len(stats)):
            n = stats[s, 0]
            if n == 0:
                out.append(None)
                continue
            mean = stats[s, 1 : 1 + dim] / n
            var = (stats[s, 1 + dim :] / n - mean.square()).clamp_min(0)
            with torch.no_grad():
                unbiased = var * n / (n - 1) if n > 1 else var
                self.running_mean[s].lerp_(mean.to(self.running_mean.dtype), BN_MOMENTUM)
                self.running_var[s].lerp_(unbiased.to(self.running_var.dtype), BN_MOMENTUM)
            out.append((features - mean.float()) / torch.sqrt(var.float() + BN_EPS))
        return out

    def _sum_gradients_over_workers(self) -> None:
        """Each gradient summed over the workers (each worker's loss is already divided by the
        global count): one all-reduce of all heads' gradients."""
        if not _distributed():
            return
        params = list(self.layers.parameters())
        for p in params:  # a head whose set had no sample here: a zero share of the sum
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = _all_reduce(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    @torch.no_grad()
    def logits(self, features: Tensor, head: int) -> Tensor:
        """Head `head`'s class scores (feature BN with its set's running statistics)."""
        x = features.flatten(1).float()
        if self.feature_norm:
            s = self.specs[head].fit_set
            x = (x - self.running_mean[s]) / torch.sqrt(self.running_var[s] + BN_EPS)
        return self.layers[head](x)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(values: Tensor) -> Tensor:
    """Sum over workers (a copy; on the CPU under gloo); unchanged with one worker."""
    if not _distributed():
        return values
    on = values.device if dist.get_backend() == "nccl" else torch.device("cpu")
    summed = values.to(on).clone()
    dist.all_reduce(summed)
    return summed.to(values.device)
