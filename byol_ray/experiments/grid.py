"""Grid types: pure data (no Ray, no MLflow), so experiments and the sweep planner share them.

A `Grid` is one ablation: per preset, its cells, and how each of its axes spells a value in
the `ablation_value` tag (`axes`), so that tags written as "1.0" and "1" meet in one row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from byol_ray.core.methods import untrained_names


@dataclass(frozen=True)
class Cell:
    """One point of a grid: the method, the axis value tables show, the config overrides."""

    method: str  # a `core.methods` name (byol, simclr, random_init) or package.module:Class
    ablation: str  # the axis: batch_size, recipe, strength, tau_base, target_network, ...
    value: str  # the axis value as tables show it (the MLflow tag `ablation_value`)
    overrides: tuple[str, ...] = ()

    def key(self, seed: int) -> str:
        """Stable trial name: the same cell and seed always map to the same MLflow run."""
        if self.method in untrained_names():  # one run, whatever the seed: "random-init"
            return self.method.replace("_", "-")
        return f"{self.method}-{self.ablation}={self.value}-s{seed}"


@dataclass(frozen=True)
class Grid:
    """An ablation grid: a name, per preset its cells, and the canonical spelling of a tag
    value per axis (axes not listed keep their text)."""

    name: str
    description: str
    cells: Callable[[str], list[Cell]]  # preset -> cells (GPU presets: the paper's values)
    axes: Mapping[str, Callable[[str], str]] = field(default_factory=dict)


def number(text: str) -> str:
    """A numeric axis value as %g ('1.0' -> '1'); text that is not a number stays as it is."""
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def integer(text: str) -> str:
    """An integer axis value ('256.0' -> '256'); text that is not a number stays as it is."""
    try:
        return str(int(float(text)))
    except ValueError:
        return text
