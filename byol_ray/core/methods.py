"""A method's facts, in one entry per method and without torch: its name, how tables label it,
whether it trains, whether the tables comparing methods show it.

Config validation (`method.name`), the sweep planner and the tables read these entries; the torch
classes of `byol_ray.learn.methods` register under the same names (`registry.register` refuses
a name without an entry here). A method from outside the package, `package.module:Class`
(docs/using/own-method.md), needs no entry: it trains, is labelled by its class name and is
shown beside BYOL and SimCLR wherever its runs have cells. No torch, Ray or MLflow here, so
`byol-ray --help` and config errors stay cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A method from outside the package; learn/methods/registry.py imports and checks it.
OUTSIDE_METHOD = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class MethodInfo:
    """What the package outside a method's class knows of it."""

    name: str  # `method.name` and the runs' `method` tag
    label: str  # as table columns, captions and figure legends name it
    trains: bool = True  # False: evaluated as initialised, one run (the tables' untrained floor)
    compared: bool = True  # a column of the tables comparing methods (Fig. 3a/3b, BN table)
    colour: str | None = None  # its colour in the figures (None: the next of matplotlib's)


_ENTRIES: dict[str, MethodInfo] = {}


def add(info: MethodInfo) -> MethodInfo:
    """Enter a method's facts under its name (before its class registers); returns `info`."""
    if info.name in _ENTRIES:
        raise ValueError(f"method {info.name!r} has two entries: {_ENTRIES[info.name]}, {info}")
    _ENTRIES[info.name] = info
    return info


BYOL = add(MethodInfo("byol", "BYOL", colour="#1f77b4"))
SIMCLR = add(MethodInfo("simclr", "SimCLR", colour="#d62728"))
# The paper's random-initialisation baseline [P §3: 1.4% linear top-1].
RANDOM_INIT = add(MethodInfo("random_init", "random-init", trains=False, compared=False))


def method_names() -> tuple[str, ...]:
    """The package's method names, in entry order: what `method.name` may be besides an
    outside `package.module:Class`."""
    return tuple(_ENTRIES)


def is_outside(name: str) -> bool:
    """Whether `name` names a class outside the package (`package.module:Class`)."""
    return bool(OUTSIDE_METHOD.fullmatch(name))


def method_info(name: str) -> MethodInfo:
    """The facts of the method `name`: its entry, or for `package.module:Class` a trained method
    labelled `Class`; a KeyError naming the allowed names otherwise."""
    if name in _ENTRIES:
        return _ENTRIES[name]
    if is_outside(name):
        return MethodInfo(name, name.rpartition(":")[2])
    raise KeyError(f"unknown method {name!r}; one of: {', '.join(method_names())}, "
                   "package.module:Class")


def label(name: object) -> str:
    """How tables name the method `name` (any other tag, e.g. `supervised`, as it is)."""
    known = isinstance(name, str) and (name in _ENTRIES or is_outside(name))
    return method_info(name).label if known else str(name)


def untrained_names() -> tuple[str, ...]:
    """The methods evaluated as initialised, never trained (`random_init`)."""
    return tuple(n for n, info in _ENTRIES.items() if not info.trains)


def compared_methods(found: Iterable[object] = ()) -> tuple[str, ...]:
    """The methods tables compare: the package's compared ones (BYOL, SimCLR), then any outside
    method among `found` (the `method` tags of the runs at hand), sorted."""
    outside = sorted({m for m in found if isinstance(m, str) and is_outside(m)})
    return (*(n for n, info in _ENTRIES.items() if info.compared), *outside)
