"""Methods by name: each `Method` subclass registers itself with `@register("name")`, and
`build_method` builds the one `cfg.method.name` names on a fresh encoder.

A registered class is built as `cls(encoder, feat_dim, cfg.model, cfg.method)`. Every name
lookup goes through `method_class`, the one place a later change would also accept a class
from outside the package (`package.module:Class`).
"""

from __future__ import annotations

from collections.abc import Callable

from byol_ray.core.config import Config, ConfigError
from byol_ray.learn.methods.base import Method
from byol_ray.learn.models import build_encoder

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make the `Method` subclass buildable as `method.name=<name>`."""

    def add(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name]}, {cls})")
        _REGISTRY[name] = cls
        return cls

    return add


def method_names() -> tuple[str, ...]:
    """The registered method names, sorted: what `method.name` may be."""
    return tuple(sorted(_REGISTRY))


def method_class(name: str) -> type[Method]:
    """The class registered as `name`; a ConfigError naming `method.name` otherwise."""
    # Hook: an out-of-package class `package.module:Class` would be imported and checked
    # (a Method subclass) here, before the registry lookup.
    if name not in _REGISTRY:
        raise ConfigError("method.name", f"unknown method {name!r}; registered: "
                                         f"{', '.join(method_names())}")
    return _REGISTRY[name]


def build_method(cfg: Config) -> Method:
    """The method named by `cfg.method.name` around a fresh encoder of `cfg.model`."""
    cls = method_class(cfg.method.name)
    encoder, feat_dim = build_encoder(cfg.model)
    return cls(encoder, feat_dim, cfg.model, cfg.method)
