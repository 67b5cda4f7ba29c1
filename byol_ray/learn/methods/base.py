"""The API the training loop sees: a `Method` wraps an encoder with its objective."""

from __future__ import annotations

from torch import Tensor, nn

from byol_ray.core.config import ModelConfig
from byol_ray.learn.models import mlp


class Method(nn.Module):
    """Objective + target rule around an encoder; the training loop knows only this API.

    Subclasses register by name (`byol_ray.learn.methods.registry.register`) and are built as
    `cls(encoder, feat_dim, model_config, method_config)`.
    """

    encoder: nn.Module  # what evaluation (kNN, linear probe) uses
    group_size = 0  # images sharing negatives (`batch_groups.within_groups`); 0 = global batch

    def _online_network(self, encoder: nn.Module, feat_dim: int, model: ModelConfig) -> None:
        """The encoder and the projector MLP on its features, which BYOL and SimCLR both train."""
        self.encoder = encoder
        self.projector = mlp(feat_dim, model.proj_hidden_dim, model.proj_dim, model.projector_norm)

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Loss on a batch of two views: {"loss": ..., other detached scalars to log}."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Hook run after each optimiser step (e.g. BYOL's EMA); returns values to log."""
        return {}
