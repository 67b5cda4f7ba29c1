"""Methods by name: each `Method` subclass registers itself with `@register("name")` under its
entry of `core/methods.py` (its facts: label, trains, compared), and `build_method` builds the
one `cfg.method.name` names on a fresh encoder.

A registered class is built as `cls(encoder, feat_dim, cfg.model, cfg.method)`. Every name
lookup goes through `method_class`, which also takes a class from outside the package,
`package.module:Class` (docs/using/own-method.md); `check_method` tries such a class on the
driver, before any worker starts.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from byol_ray.core import methods
from byol_ray.core.config import Config, ConfigError
from byol_ray.learn.methods.base import Method
from byol_ray.learn.models import build_encoder

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make the `Method` subclass buildable as `method.name=<name>`; `name`
    needs its facts entered first (`core.methods.add`), which config and the tables read."""

    def add(cls: type[Method]) -> type[Method]:
        if name not in methods.method_names():
            raise ValueError(f"method {name!r} has no entry in byol_ray.core.methods: enter "
                             "its facts with methods.add(MethodInfo(...)) before registering")
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name]}, {cls})")
        _REGISTRY[name] = cls
        return cls

    return add


def method_names() -> tuple[str, ...]:
    """The registered method names, sorted: the classes behind `core.methods`' entries."""
    return tuple(sorted(_REGISTRY))


def method_class(name: str) -> type[Method]:
    """The class registered as `name`, or the class `package.module:Class` names (importable,
    with the `Method` interface); a ConfigError naming `method.name` otherwise."""
    if ":" in name:
        return _outside_class(name)
    if name not in _REGISTRY:
        raise ConfigError("method.name", f"unknown method {name!r}; registered: "
                                         f"{', '.join(method_names())}")
    return _REGISTRY[name]


def build_method(cfg: Config) -> Method:
    """The method named by `cfg.method.name` around a fresh encoder of `cfg.model`."""
    cls = method_class(cfg.method.name)
    encoder, feat_dim = build_encoder(cfg.model)
    return cls(encoder, feat_dim, cfg.model, cfg.method)


def check_method(cfg: Config) -> None:
    """For a method from outside the package: build it as a worker would and run one step on
    two views of two random images; a ConfigError naming `method.name` and what is missing."""
    if ":" not in cfg.method.name:
        return  # ours: tested with the package
    name = cfg.method.name
    try:
        method = build_method(cfg)
    except Exception as error:
        raise ConfigError("method.name", f"{name!r}: building it as cls(encoder, feat_dim, "
                          f"model, method) failed: {type(error).__name__}: {error}") from None
    if not isinstance(getattr(method, "encoder", None), nn.Module):
        raise ConfigError("method.name", f"{name!r}: needs an `encoder` attribute (the "
                          "nn.Module evaluation uses)")
    size = cfg.data.image_size
    views = [torch.rand(2, 3, size, size) for _ in range(2)]
    try:
        out = method(*views)
    except Exception as error:
        raise ConfigError("method.name", f"{name!r}: forward(view1, view2) failed: "
                          f"{type(error).__name__}: {error}") from None
    loss = out.get("loss") if isinstance(out, dict) else None
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad):
        raise ConfigError("method.name", f"{name!r}: forward(view1, view2) must return a dict "
                          "with 'loss', a scalar tensor with a gradient; got "
                          f"{type(out).__name__}")


def _outside_class(name: str) -> type[Method]:
    """The class `package.module:Class` names, checked for the `Method` interface."""
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as error:
        raise ConfigError("method.name", f"{name!r}: cannot import {module_name} ({error}); "
                          "is its folder on PYTHONPATH?") from None
    except AttributeError:
        raise ConfigError("method.name", f"{name!r}: {module_name} has no {class_name}") from None
    except Exception as error:  # the module itself fails on import
        raise ConfigError("method.name", f"{name!r}: importing {module_name} failed: "
                          f"{type(error).__name__}: {error}") from None
    missing = [f"{attr}()" for attr in ("forward", "after_step")
               if not callable(getattr(cls, attr, None))]
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        missing.insert(0, "to be a torch nn.Module (subclass byol_ray.learn.methods.Method)")
    elif not _takes_four_arguments(cls):
        missing.append("a constructor cls(encoder, feat_dim, model, method)")
    if missing:
        raise ConfigError("method.name", f"{name!r} lacks the Method interface: needs "
                          f"{', '.join(missing)}")
    return cls


def _takes_four_arguments(cls: type) -> bool:
    """Whether `cls(encoder, feat_dim, model, method)` binds (`*args` too); True where the
    signature cannot be read (building it on the driver then tells)."""
    try:
        inspect.signature(cls).bind(*range(4))
    except TypeError:
        return False
    except ValueError:
        return True
    return True
