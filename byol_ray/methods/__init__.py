"""Self-supervised methods (objective + target rule around an encoder) and their losses."""

from byol_ray.methods.base import Method, RandomInit, build_method
from byol_ray.methods.byol import BYOL
from byol_ray.methods.simclr import SimCLR

__all__ = ["BYOL", "Method", "RandomInit", "SimCLR", "build_method"]
