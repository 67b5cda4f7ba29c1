"""Networks: the encoder f and the MLP heads g (projector) and q (predictor)."""

from byol_ray.models.encoders import build_encoder, small_cnn
from byol_ray.models.heads import mlp

__all__ = ["build_encoder", "mlp", "small_cnn"]
