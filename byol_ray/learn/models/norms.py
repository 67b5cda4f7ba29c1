"""Normalisation layers of the encoder and the MLP heads: does BYOL need batch statistics?

- heads (`model.projector_norm`, `model.predictor_norm`): batch (the paper's BN after the
  hidden linear layer [P §3.3]), layer, group (`GROUPS`) or none (Fetterman & Albrecht 2020:
  BYOL without BN in its heads performs no better than random);
- encoder (`model.encoder_norm`): batch (torchvision's BN), group_ws (group norm + weight-
  standardised convolutions: Richemond et al. 2020, arXiv 2010.10241, §3.3, no batch
  statistics anywhere), none (every BN removed, nothing else changed) or affine_init (every BN
  replaced by a per-channel affine initialised from the statistics of its first training
  batch, then learned: the BN-free, data-dependent initialisation of Richemond et al.; a deep
  ResNet with no normalisation and torchvision's initialisation has activations that grow
  with depth, so `none` is meant for the small CNN and for the collapse ablation).

Only `batch` holds batch statistics, so only it becomes SyncBN or a `GroupBatchNorm` on
several workers (`learn.parallel.with_sync_batchnorm`, `batch_groups.within_groups` convert
`_BatchNorm`s only).

Constants: `GROUPS` = 32 and `WS_EPS` = 1e-5 are Wu & He 2018's group norm default and a
standard WS epsilon; Richemond et al.'s own values could not be read from stored text, so
they are not claimed to be theirs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

GROUPS = 32  # Wu & He 2018, "Group Normalization", §3.1 default (not verified for Richemond)
WS_EPS = 1e-5  # weight standardisation's epsilon (not verified for Richemond)


def groups_for(channels: int) -> int:
    """The largest divisor of `channels` up to `GROUPS` (narrow layers of the small CNN)."""
    return next(g for g in range(min(GROUPS, channels), 0, -1) if channels % g == 0)


def head_norm(kind: str, dim: int) -> nn.Module:
    """The normalisation after the hidden linear layer of a projector or predictor."""
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "group":
        return nn.GroupNorm(groups_for(dim), dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown head norm {kind!r}; expected batch, layer, group or none")


class WSConv2d(nn.Conv2d):
    """A convolution whose weight is standardised per output channel on every call (zero mean,
    unit variance over its fan-in: Qiao et al. 2019), as Richemond et al. pair with GN."""

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with the standardised weight."""
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, correction=0)
        weight = (self.weight - mean) * torch.rsqrt(var + WS_EPS)
        return self._conv_forward(x, weight, self.bias)


class DataInitAffine(nn.Module):
    """A per-channel scale and shift with no batch statistics: on its first forward in
    training mode it is set so that that batch leaves it with zero mean and unit variance per
    channel (a data-dependent initialisation), and is learned from then on."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        """x * weight + bias per channel (dim 1); the first training batch sets them."""
        if self.training and not self.initialised:
            with torch.no_grad():
                var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
                scale = torch.rsqrt(var + self.eps)
                self.weight.copy_(scale)
                self.bias.copy_(-mean * scale)
                self.initialised.fill_(True)
        shape = (1, -1, *[1] * (x.dim() - 2))
        return x * self.weight.view(shape) + self.bias.view(shape)


def _replacement(module: nn.Module, kind: str) -> nn.Module | None:
    if isinstance(module, _BatchNorm):
        channels = module.num_features
        if kind == "group_ws":
            return nn.GroupNorm(groups_for(channels), channels)
        return nn.Identity() if kind == "none" else DataInitAffine(channels)
    if kind == "group_ws" and type(module) is nn.Conv2d:
        conv = WSConv2d(module.in_channels, module.out_channels, module.kernel_size,
                        module.stride, module.padding, module.dilation, module.groups,
                        module.bias is not None, module.padding_mode)
        conv.load_state_dict(module.state_dict())
        return conv
    return None


def normalise_encoder(encoder: nn.Module, kind: str) -> nn.Module:
    """`encoder` with its batch norms (and, for group_ws, its convolutions) replaced as
    `model.encoder_norm` says, in place; `batch` leaves it as built."""
    if kind not in ("batch", "group_ws", "none", "affine_init"):
        raise ValueError(f"unknown encoder norm {kind!r}; expected batch, group_ws, none or "
                         "affine_init")
    if kind == "batch":
        return encoder
    for parent in list(encoder.modules()):
        for name, child in parent.named_children():
            if (new := _replacement(child, kind)) is not None:
                setattr(parent, name, new)
    return encoder

