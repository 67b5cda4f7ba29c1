"""Table 5a: the target network's decay rate tau_base [P §5, Table 5a].

The rows vary tau_base under the cosine schedule tau -> 1 [P §3]; only tau = 0 (stop gradient
of online: the target copies the online network at every step) is held constant, as the
table's footnote says. tau = 1 never updates the target: a fixed random network, drawn apart
from the online one (`method.target_init=independent`, DeepMind's reference). Both extremes
should fall far below tau_base around 0.99.
"""

import pandas as pd

from byol_ray.core.presets import get_preset
from byol_ray.experiments.grid import Cell, Grid, number
from byol_ray.tables import table, verdicts
from byol_ray.tables.cells import describe, find_cell, numeric
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import NO_RUNS, Check, check

AXIS = "tau_base"
PAPER = (1.0, 0.999, 0.99, 0.9, 0.0)  # Table 5a (0.996 is the 1000-epoch run's, no row there)
# cpu-mini: the extremes and the paper's 0.99 (which keeps 0.11 of the target's start in the
# miniature's 440 steps), beside the preset's own tau_base (`cells`).
REDUCED = {"cpu-mini": (1.0, 0.99, 0.0)}


def _schedule(tau: float) -> str:
    """Table 5a's schedule of a row: cosine tau -> 1, but tau = 0 held constant (footnote)."""
    return "constant" if tau == 0 else "cosine"


def cells(preset: str) -> list[Cell]:
    """BYOL at each tau_base of Table 5a, with the row's schedule; a reduced grid also holds
    the preset's own tau_base, the other grids' BYOL cell (0.97 on cpu-mini)."""
    taus = PAPER
    if preset in REDUCED:
        taus = sorted({*REDUCED[preset], get_preset(preset).method.tau_base}, reverse=True)
    return [
        Cell("byol", AXIS, f"{tau:g}",
             (f"method.tau_base={tau}", f"method.tau_schedule={_schedule(tau)}"))
        for tau in taus
    ]


GRID = Grid("ema_decay", "Table 5a: top-1 against the target's EMA decay rate", cells,
            {AXIS: number})
REFERENCE = references("table_5a")


def _label(tau: float) -> str:
    if tau == 1:
        return "constant random network"
    return "stop gradient of online (no EMA)" if tau == 0 else "moving average of online"


def build(inputs: table.Inputs) -> table.Table:
    """Table 5a: BYOL, one row per τ_base of the paper or of our runs, largest first."""
    cells, refs = inputs.cells, {r.row: r for r in REFERENCE}
    ours = cells.loc[cells["ablation"].eq(AXIS) & cells["method"].eq("byol"), "ablation_value"]
    rows = sorted(set(refs) | set(ours), key=numeric, reverse=True)
    records = [table.cell_record(r, _label(numeric(r)), "byol",
                                 find_cell(cells, AXIS, r, "byol"), refs.get(r)) for r in rows]
    data = table.data_frame(records)
    display = table.cell_display({"τ_base": rows, "target": [r["label"] for r in records]},
                                 records, [refs.get(r) for r in rows], "ours: BYOL top-1 (%)")
    return table.make(
        "table_5a", "Table 5a: EMA decay rate τ_base of the target network (BYOL)",
        f"{describe(inputs.metric)} Paper values: {table.sources(data)}.", display, data,
        checks(data, inputs))


def checks(data: pd.DataFrame, inputs: table.Inputs) -> list[Check]:
    """The paper's shape: the best τ strictly inside (0, 1), τ = 0 and τ = 1 far below it
    (under half the best's gain over the random-init floor), rows ordered as the paper's."""
    ours, floor, noise = table.estimates(data), inputs.floor, inputs.noise
    interior = {r: e for r, e in ours.items() if 0 < numeric(r) < 1}
    extremes = {r: ours[r] for r in ("0", "1") if r in ours}
    best_what = "the best τ_base lies strictly between 0 and 1 (paper: 0.99)"
    if not interior:
        return [Check(NO_RUNS, best_what), Check(NO_RUNS, "τ_base = 0 far below the best"),
                Check(NO_RUNS, "τ_base = 1 far below the best")]
    best = max(interior, key=lambda r: interior[r].mean)
    top = max(extremes, key=lambda r: extremes[r].mean, default=None)
    found = [check(verdicts.above(interior[best], extremes[top], noise) if top else None,
                   f"{best_what}: τ_base = {best} above τ_base = {top}")]
    for extreme in ("0", "1"):
        what = f"τ_base = {extreme} far below the best"
        found.append(check(
            verdicts.far_below(ours[extreme], interior[best], floor, noise),
            f"{what} ({ours[extreme].mean:.1f} vs {interior[best].mean:.1f}; far = under half "
            f"the gain over {table.floor_text(floor)})") if extreme in ours
            else Check(NO_RUNS, what))
    return [*found, verdicts.order_check(ours, table.paper_values(data), "τ_base rows", noise)]


TABLES = (build,)
