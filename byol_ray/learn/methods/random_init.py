"""The random-initialisation baseline of the paper's tables (its linear top-1: 1.4%)."""

from __future__ import annotations

from torch import Tensor, nn

from byol_ray.learn.methods.base import Method
from byol_ray.learn.methods.registry import register


@register("random_init")
class RandomInit(Method):
    """The untrained encoder, evaluated as initialised."""

    def __init__(self, encoder: nn.Module, *_unused: object):
        super().__init__()
        self.encoder = encoder

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """Always raises: this baseline is evaluated as initialised, never trained."""
        raise RuntimeError("random_init is an evaluation baseline; it has no training loss")
