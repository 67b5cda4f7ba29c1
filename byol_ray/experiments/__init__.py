"""The paper's tables and figures, one module each, in the order the report shows them.

Each holds its `REFERENCE` (its rows of `tables/reference.csv`: the paper's values, cited) and
`TABLES`, its builders with their checks (`tables.table.Inputs` -> a `Table`, or None where it
has nothing to show); the four ablations also hold their sweep `GRID` and its row keys. The
sweep CLI (`grids`) and the report (`paper_experiments`, `canonical_value`) read them here.
They build on the table kit (`byol_ray.tables`) and are read by `byol_ray.report`, never the
other way. Modules load on first use, so that the sweep planner's `grid` types cost no pandas.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import import_module
from types import ModuleType

from byol_ray.experiments.grid import Grid

ORDER = ("ema_decay", "target_network", "batch_size", "augmentations", "baseline",
         "linear_eval", "semi_supervised", "transfer", "normalization")
# Grids `reproduce` runs only when asked (`--grids`): beyond the paper, and beyond the demo's
# 10 minutes on cpu-mini.
OPT_IN = frozenset({"normalization"})
# The modules of ORDER that hold a sweep GRID (of the same name): the CLI lists them without
# importing the modules (pandas, the report's machinery), so that `--help` answers at once.
GRIDS = ("ema_decay", "target_network", "batch_size", "augmentations", "normalization")


def paper_experiments() -> list[ModuleType]:
    """Every experiment module, in the report's order (the ablations' grids first)."""
    return [import_module(f"{__name__}.{name}") for name in ORDER]


@cache
def grids() -> dict[str, Grid]:
    """The sweep grids by name (`GRIDS`), in the order `reproduce` runs them."""
    return {name: import_module(f"{__name__}.{name}").GRID for name in GRIDS}


def canonical_value(ablation: str, value: object) -> str:
    """An `ablation_value` tag in its grid's spelling for the axis (numbers via %g, Table 5b
    switches), so that runs of different sweeps meet in one row; other axes keep their text."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    for grid in grids().values():
        if ablation in grid.axes:
            return grid.axes[ablation](text.strip())
    return text.strip()
