"""Self-supervised methods (objective + target rule around an encoder) and their losses.

Importing the package registers every method of it (`registry.method_names()`)."""

from byol_ray.learn.methods.base import Method
from byol_ray.learn.methods.byol import BYOL
from byol_ray.learn.methods.random_init import RandomInit
from byol_ray.learn.methods.registry import build_method, method_names, register
from byol_ray.learn.methods.simclr import SimCLR

__all__ = ["BYOL", "Method", "RandomInit", "SimCLR", "build_method", "method_names", "register"]
