"""Self-supervised methods (objective + target rule around an encoder) and their losses."""

from byol_ray.learn.methods.base import Method, RandomInit, build_method
from byol_ray.learn.methods.byol import BYOL
from byol_ray.learn.methods.simclr import SimCLR

__all__ = ["BYOL", "Method", "RandomInit", "SimCLR", "build_method"]
