"""SimCLR (Chen et al. 2020): the contrastive baseline BYOL is compared with."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from byol_ray.config import MethodConfig, ModelConfig
from byol_ray.methods.base import Method
from byol_ray.methods.losses import nt_xent
from byol_ray.models import mlp


class SimCLR(Method):
    """Encoder -> projector MLP, trained with NT-Xent between the two views' projections.

    Negatives are the other samples of the local batch (no cross-worker gather).
    """

    def __init__(self, encoder: nn.Module, feat_dim: int, model: ModelConfig,
                 method: MethodConfig):
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(feat_dim, model.proj_hidden_dim, model.proj_dim)
        self.temperature = method.temperature

    def forward(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """NT-Xent loss of the two views, and their mean projection cosine similarity."""
        z1 = self.projector(self.encoder(view1))
        z2 = self.projector(self.encoder(view2))
        loss = nt_xent(z1, z2, self.temperature)
        cos_sim = F.cosine_similarity(z1.detach().float(), z2.detach().float(), dim=-1).mean()
        return {"loss": loss, "cos_sim": cos_sim}
