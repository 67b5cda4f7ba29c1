"""Optimisers and schedules of the paper [P App. C]: LARS, parameter groups that exclude
biases and norm weights, the warm-up + cosine learning rate and the cosine EMA decay tau.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from byol_ray.core.config import OptimConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (LARS, You et al. 2017) [P App. C].

    DeepMind's BYOL optax chain (byol/utils/optimizers.py: add weight decay, scale by LARS,
    scale by the learning rate), for each parameter w with gradient g at learning rate lr_t:

        u = g + wd * w
        ratio = eta * ||w|| / ||u||        (1 where either norm is 0)
        m <- momentum * m + ratio * u       (the buffer holds no learning rate)
        w <- w - lr_t * m

    so a warm-up or a decay of lr_t scales the whole step at once. `clip_lr` is LARC's
    clipping as solo-learn applies it (solo/utils/lars.py, `clip_lars_lr`: the ratio becomes
    min(ratio / lr_t, 1)), so the per-parameter rate lr_t * ratio is min(eta ||w|| / ||u||,
    lr_t): never above lr_t. Groups with `lars_exclude` True (biases, BN) get neither weight
    decay nor the ratio: plain momentum SGD, m <- momentum * m + g, w <- w - lr_t * m.

    `foreach` True updates each group with a few `torch._foreach_*` calls over all its
    parameters and computes every trust ratio in one tensor, without a host sync: on a GPU
    the per-parameter loop issues ~7 small kernels per tensor and leaves the step host-bound.
    False runs the same arithmetic one parameter at a time (the reference it is tested
    against), which is faster on a CPU (x2 on ResNet-18 and -50, benchmarks/profile_step.py),
    likely because one tensor's passes stay in cache where each multi-tensor op streams the
    whole model through memory. None (the default) picks foreach for a group whose parameters
    are all on CUDA, as torch.optim does. The state is one `momentum_buffer` per parameter
    either way, so checkpoints load in both.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        clip_lr: bool = False,
        foreach: bool | None = None,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "clip_lr": clip_lr,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)
        self.foreach = foreach  # how, not what: kept out of the groups and the state dict

    def __setstate__(self, state: dict) -> None:
        """Checkpoints written before `clip_lr` existed load as unclipped."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("clip_lr", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Apply one LARS update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            buffers = [self._momentum_buffer(p) for p in params]
            foreach = self.foreach
            if foreach is None:
                foreach = all(p.device.type == "cuda" for p in params)
            if foreach:
                _step_foreach(params, buffers, group)
            else:
                _step_per_parameter(params, buffers, group)
        return loss

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]


def _trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor, group: dict) -> torch.Tensor:
    """eta * ||w|| / ||u|| (1 where a norm is 0); with `clip_lr`, min(that / lr_t, 1).

    Elementwise, so it serves one parameter's norms or all of a group's stacked together.
    """
    ratio = group["trust_coefficient"] * w_norm / u_norm
    if group["clip_lr"]:  # at lr_t = 0: 1, as solo-learn's min(ratio / 0, 1) = min(inf, 1)
        lr = group["lr"]
        ratio = (ratio / lr).clamp(max=1.0) if lr > 0 else torch.ones_like(ratio)
    return torch.where((w_norm > 0) & (u_norm > 0), ratio, torch.ones_like(ratio))


def _step_per_parameter(params: list[torch.Tensor], buffers: list[torch.Tensor],
                        group: dict) -> None:
    """One group's LARS update, one parameter at a time (the reference arithmetic)."""
    for p, buf in zip(params, buffers, strict=True):
        update = p.grad
        if not group["lars_exclude"]:
            update = update.add(p, alpha=group["weight_decay"])
            w_norm = torch.linalg.vector_norm(p)
            update = update.mul_(_trust_ratio(w_norm, torch.linalg.vector_norm(update), group))
        buf.mul_(group["momentum"]).add_(update)
        p.sub_(buf, alpha=group["lr"])


def _step_foreach(params: list[torch.Tensor], buffers: list[torch.Tensor], group: dict) -> None:
    """One group's LARS update as a few multi-tensor ops: the same arithmetic, op for op,
    as `_step_per_parameter`, with the ratios of all parameters in one stacked tensor."""
    updates = [p.grad for p in params]
    if not group["lars_exclude"]:
        updates = torch._foreach_add(updates, params, alpha=group["weight_decay"])
        w_norms = torch.stack(torch._foreach_norm(params))
        u_norms = torch.stack(torch._foreach_norm(updates))
        ratios = _trust_ratio(w_norms, u_norms, group)
        torch._foreach_mul_(updates, list(ratios.unbind()))
    torch._foreach_mul_(buffers, group["momentum"])
    torch._foreach_add_(buffers, updates)
    torch._foreach_sub_(params, buffers, alpha=group["lr"])


def param_groups(
    model: nn.Module, weight_decay: float, exclude_bias_and_bn: bool
) -> list[dict]:
    """Split trainable parameters into a decayed/adapted group and an excluded one.

    Biases and all 1-D parameters (BatchNorm/LayerNorm weights) go to a group with
    weight_decay 0 and `lars_exclude` True, the rest to one with `weight_decay` and
    `lars_exclude` False [P App. C]; frozen parameters (the BYOL target) are left out.
    """
    decay, excluded = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        is_bias_or_norm = p.ndim <= 1  # biases, BN/LN scales and shifts
        (excluded if exclude_bias_and_bn and is_bias_or_norm else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """The optimiser named by `cfg.name` (lars, sgd or adamw) over `param_groups(model)`.

    `lr` is the peak rate; the training loop overwrites each group's "lr" every step
    with `lr_at`.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_and_bn)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum,
                    trust_coefficient=cfg.trust_coefficient, clip_lr=cfg.clip_lr)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {cfg.name!r}; expected lars, sgd or adamw")


def lr_at(step: float, total_steps: float, warmup_steps: float, peak_lr: float) -> float:
    """Learning rate at `step`: linear warm-up from 0 to `peak_lr`, then cosine decay to 0.

    [P App. C]: 0 at step 0 (when there is a warm-up), `peak_lr` at `warmup_steps`,
    exactly 0 at `total_steps` and after.
    """
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0:
        return 0.0 if step >= total_steps else peak_lr
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
