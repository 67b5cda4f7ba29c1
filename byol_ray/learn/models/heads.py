"""The MLP used for BYOL's projector and predictor [P §3.3]."""

from __future__ import annotations

from torch import nn

from byol_ray.learn.models.norms import head_norm


def mlp(in_dim: int, hidden_dim: int, out_dim: int, norm: str = "batch") -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Linear: the paper's projector/predictor (`norm`: the
    hidden layer's normalisation, `norms.head_norm`; the paper's is batch).

    The output has no batch norm, as in the paper; the hidden layer's bias is kept
    (BN makes it redundant but it is harmless and matches the reference code).
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        head_norm(norm, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
