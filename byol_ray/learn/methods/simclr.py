"""SimCLR (Chen et al. 2020): the contrastive baseline BYOL is compared with."""

from __future__ import annotations

from torch import Tensor, nn

from byol_ray.core.config import MethodConfig, ModelConfig
from byol_ray.learn.methods.base import Method
from byol_ray.learn.methods.losses import nt_xent
from byol_ray.learn.methods.registry import register


@register("simclr")
class SimCLR(Method):
    """Encoder -> projector MLP, trained with NT-Xent between the two views' projections.

    Negatives are both views of every other image of the global batch, gathered from all
    workers with gradients (`nt_xent`): 2B - 2 per sample for a global batch of B.
    """

    def __init__(self, encoder: nn.Module, feat_dim: int, model: ModelConfig,
                 method: MethodConfig):
        super().__init__()
        self._online_network(encoder, feat_dim, model)
        self.temperature = method.temperature

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """NT-Xent loss of the two views' projections over the global batch."""
        z1 = self.projector(self.encoder(view1))
        z2 = self.projector(self.encoder(view2))
        return {"loss": nt_xent(z1, z2, self.temperature, self.group_size)}
