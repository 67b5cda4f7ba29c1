"""The API the training loop sees: a `Method` wraps an encoder with its objective."""

from __future__ import annotations

from torch import Tensor, nn


class Method(nn.Module):
    """Objective + target rule around an encoder; the training loop knows only this API.

    Subclasses register by name (`byol_ray.learn.methods.registry.register`) and are built as
    `cls(encoder, feat_dim, model_config, method_config)`.
    """

    encoder: nn.Module  # what evaluation (kNN, linear probe) uses

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Loss on a batch of two views: {"loss": ..., other detached scalars to log}."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Hook run after each optimiser step (e.g. BYOL's EMA); returns values to log."""
        return {}
