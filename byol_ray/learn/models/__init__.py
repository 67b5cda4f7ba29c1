"""Networks: the encoder f and the MLP heads g (projector) and q (predictor)."""

from byol_ray.learn.models.encoders import build_encoder, small_cnn
from byol_ray.learn.models.heads import mlp

__all__ = ["build_encoder", "mlp", "small_cnn"]
