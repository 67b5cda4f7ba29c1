"""BYOL (Grill et al. 2020): an online network predicts a slow-moving target network.

online:  view -> encoder f_theta -> projector g_theta -> predictor q_theta -> q
target:  view -> encoder f_xi    -> projector g_xi                          -> z'
loss:    L(q(v1), sg(z'(v2))) + L(q(v2), sg(z'(v1)))                         [P eq. 2]
         (beta > 0: the paper's InfoNCE_{alpha,beta} over the global batch, `byol_loss`)
update:  xi <- tau xi + (1 - tau) theta after each optimiser step            [P §3.2]

The Table 5 ablations are config switches: `predictor=False` (q is the identity),
`tau_base` (tau=1: a fixed random target; tau=0 with `tau_schedule="constant"`: the target is
a stop-gradient copy of the online network), `target_network=False` (the target side is the
online projection, with gradients, as in SimCLR) and `beta > 0` (contrastive term).
`target_init` says where xi starts: a second random draw (DeepMind's reference) or a copy of
theta.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from byol_ray.core.config import MethodConfig, ModelConfig
from byol_ray.learn.methods.base import Method
from byol_ray.learn.methods.losses import byol_loss
from byol_ray.learn.methods.registry import register
from byol_ray.learn.models import build_encoder, mlp
from byol_ray.learn.target_memory import init_share, tau_at


def _shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {name: t.shape for name, t in module.state_dict().items()}


@register("byol")
class BYOL(Method):
    """BYOL and its Table 5 variants around `encoder` (feature size `feat_dim`)."""

    def __init__(self, encoder: nn.Module, feat_dim: int, model: ModelConfig,
                 method: MethodConfig):
        super().__init__()
        self._online_network(encoder, feat_dim, model)
        self.predictor = (
            mlp(model.proj_dim, model.pred_hidden_dim, model.proj_dim, model.predictor_norm)
            if method.predictor else nn.Identity()
        )
        self.target: nn.Module | None = None
        if method.target_network:
            self.target = self._initial_target(model, method.target_init)
        self.tau_base = method.tau_base
        self.tau_schedule = method.tau_schedule
        self.temperature = method.temperature
        self.beta = method.beta
        self._share, self._share_step = 1.0, 0  # Pi tau so far, and after which step

    def _initial_target(self, model: ModelConfig, init: str) -> nn.Sequential:
        """xi at step 0: "independent" draws encoder + projector afresh from the builders of
        the online ones (`build_encoder`, `mlp`; the same distribution, the next numbers of
        the seeded generator, so every worker draws the same target), as DeepMind's
        `_make_initial_state` (rng_online, rng_target); "copy" copies theta."""
        online = self._online_target_part()
        if init == "copy":
            return copy.deepcopy(online).requires_grad_(False)
        encoder, dim = build_encoder(model)
        target = nn.Sequential(encoder, mlp(dim, model.proj_hidden_dim, model.proj_dim,
                                            model.projector_norm))
        if _shapes(target) != _shapes(online):
            raise ValueError(f"model.encoder={model.encoder!r} builds another network than the "
                             "online encoder given: build both from one config (build_method)")
        return target.requires_grad_(False)

    def _online_target_part(self) -> nn.Sequential:
        """The online modules the target mirrors (encoder + projector), in the same order."""
        return nn.Sequential(self.encoder, self.projector)

    def _targets(self, view: Tensor, online_z: Tensor) -> Tensor:
        """z' for one view: the stop-gradient target projection, or the online one."""
        if self.target is None:
            return online_z  # no stop-gradient: gradients flow through both sides
        with torch.no_grad():
            return self.target(view)

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Symmetrised loss of the two views (the target side without autograd)."""
        z1 = self.projector(self.encoder(view1))  # views kept apart: per-view BN statistics
        z2 = self.projector(self.encoder(view2))
        q1, q2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self._targets(view1, z1), self._targets(view2, z2)
        return {"loss": byol_loss(q1, q2, t1, t2, self.temperature, self.beta,
                                  self.group_size)}

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """EMA update xi <- tau xi + (1 - tau) theta of the target, tau from `tau_at`.

        Call once after each optimiser step; `step` is the k of `tau_at` (e.g. the number of
        optimiser steps taken so far, so the last update uses tau = 1). Buffers (BN running
        statistics) are copied. Without a target network there is nothing to update. Also
        returns `target_init_share`, the product of every tau applied so far (logged as
        train/target_init_share; after a resume the earlier steps' part is computed).
        """
        if self.target is None:
            return {}
        tau = tau_at(step, total_steps, self.tau_base, self.tau_schedule)
        if step != self._share_step + 1:  # a resumed run: its earlier steps' product
            self._share = init_share(total_steps, self.tau_base, self.tau_schedule, step - 1)
        self._share, self._share_step = self._share * tau, step
        online = self._online_target_part()
        target_params, online_params = list(self.target.parameters()), list(online.parameters())
        torch._foreach_mul_(target_params, tau)  # one fused call over all parameters
        torch._foreach_add_(target_params, online_params, alpha=1.0 - tau)
        if buffers := list(self.target.buffers()):  # none without BN (`model.*_norm`)
            torch._foreach_copy_(buffers, list(online.buffers()))
        return {"tau": tau, "target_init_share": self._share}
