"""The API the training loop sees: a `Method` wraps an encoder with its objective."""

from __future__ import annotations

from torch import Tensor, nn

from byol_ray.core.config import Config


class Method(nn.Module):
    """Objective + target rule around an encoder; the training loop knows only this API."""

    encoder: nn.Module  # what evaluation (kNN, linear probe) uses

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Loss on a batch of two views: {"loss": ..., other detached scalars to log}."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Hook run after each optimiser step (e.g. BYOL's EMA); returns values to log."""
        return {}


class RandomInit(Method):
    """The untrained encoder: the random-initialisation baseline of the paper's tables."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Always raises: this baseline is evaluated as initialised, never trained."""
        raise RuntimeError("random_init is an evaluation baseline; it has no training loss")


def build_method(cfg: Config) -> Method:
    """The method named by `cfg.method.name` (byol, simclr, random_init) on a fresh encoder."""
    from byol_ray.learn.methods.byol import BYOL  # local imports: both modules import Method
    from byol_ray.learn.methods.simclr import SimCLR
    from byol_ray.learn.models import build_encoder

    encoder, feat_dim = build_encoder(cfg.model)
    name = cfg.method.name
    if name == "byol":
        return BYOL(encoder, feat_dim, cfg.model, cfg.method)
    if name == "simclr":
        return SimCLR(encoder, feat_dim, cfg.model, cfg.method)
    if name == "random_init":
        return RandomInit(encoder)
    raise ValueError(f"unknown method {name!r}; expected byol, simclr or random_init")
