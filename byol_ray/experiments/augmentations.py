"""Fig. 3b: BYOL and SimCLR with augmentations removed, and over colour strength [P Fig. 3b].

`recipe` cells are the paper's removals; `strength` cells scale the colour-jitter magnitudes
(strength 1.0 is the baseline recipe cell). The paper's BYOL loses less than SimCLR.
"""

import pandas as pd

from byol_ray.core.config import AUGMENT_RECIPES
from byol_ray.experiments.grid import Cell, Grid, number
from byol_ray.tables import table
from byol_ray.tables.cells import describe, find_cell, numeric
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import NO_RUNS, Check, Noise, check

RECIPE, STRENGTH = "recipe", "strength"
BASELINE = "baseline"
STRENGTHS = (0.0, 0.5, 1.5)
# cpu-mini's digits are grey: hue and saturation jitter do nothing there, so its strength axis
# would show noise only.
REDUCED = {"cpu-mini": ((BASELINE, "crop_only"), ())}


def cells(preset: str) -> list[Cell]:
    """Each removal recipe and each strength, for BYOL and SimCLR."""
    recipes, strengths = REDUCED.get(preset, (AUGMENT_RECIPES, STRENGTHS))
    out = []
    for method in table.METHODS:
        out += [Cell(method, RECIPE, r, (f"augment.recipe={r}",)) for r in recipes]
        out += [Cell(method, STRENGTH, f"{s:g}", (f"augment.strength={s}",)) for s in strengths]
    return out


GRID = Grid("augmentations", "Fig. 3b: top-1 with augmentations removed, BYOL vs SimCLR",
            cells, {STRENGTH: number})

REFERENCE = references("fig_3b")  # the recipes in the paper's order, with their labels


def build(inputs: table.Inputs) -> table.Table:
    """Fig. 3b as a table: the paper's removals in its order (then any other recipe we ran),
    each method's top-1 and drop from its `baseline` recipe."""
    cells, refs = inputs.cells, {(r.row, r.method): r for r in REFERENCE}
    labels = {r.row: r.label for r in REFERENCE}
    ours = cells[cells["ablation"].eq(RECIPE) & cells["method"].isin(inputs.methods)]
    names = [*labels, *sorted(set(ours["ablation_value"]) - set(labels))]
    data, display = table.drop_frames(
        "augmentations", [(n, labels.get(n, n.replace("_", " "))) for n in names],
        lambda row, method: find_cell(cells, RECIPE, row, method), refs,
        dict.fromkeys(inputs.methods, BASELINE), BASELINE, inputs.methods)
    return table.make(
        "fig_3b", "Fig. 3b: augmentations removed, BYOL vs SimCLR (top-1 and drop from baseline)",
        f"{describe(inputs.metric)} Drop = top-1 with the full recipe (baseline) minus top-1 "
        f"with the removal. Paper values: {table.sources(data)}.", display, data,
        table.drop_checks(data, "removals", "recipes", inputs.noise))


def build_strength(inputs: table.Inputs) -> table.Table | None:
    """Top-1 against colour strength for BYOL and SimCLR, drop from strength 1 (the baseline
    recipe cell stands for strength 1 when no strength-1 cell ran), where a run swept the
    strength. No paper values."""
    cells = inputs.cells
    if not cells["ablation"].eq(STRENGTH).any():
        return None
    ours = cells[cells["ablation"].eq(STRENGTH) & cells["method"].isin(inputs.methods)]
    values = sorted(set(ours["ablation_value"]) | {"1"}, key=numeric)

    def lookup(row: str, method: str) -> dict | None:
        cell = find_cell(cells, STRENGTH, row, method)
        if cell is None and row == "1":
            cell = find_cell(cells, RECIPE, BASELINE, method)
        return cell

    data, display = table.drop_frames("colour strength", [(v, v) for v in values], lookup, {},
                                      dict.fromkeys(inputs.methods, "1"), None,
                                      inputs.methods)
    return table.make(
        "fig_3b_strength", "Fig. 3b (extension): colour-jitter strength, BYOL vs SimCLR",
        f"{describe(inputs.metric)} Drop = top-1 at strength 1 (the baseline recipe) minus "
        "top-1 at this strength. The paper has no values on this axis; its claim (§5) is that "
        "BYOL is less sensitive to the augmentations than SimCLR.", display, data,
        strength_checks(data, inputs.noise))


def strength_checks(data: pd.DataFrame, noise: Noise) -> list[Check]:
    """BYOL's largest drop smaller than SimCLR's, and BYOL losing less at each strength."""
    what = "BYOL's largest drop smaller than SimCLR's"
    worst = {}
    for method in table.METHODS:
        part = data[data["method"].eq(method) & data["drop"].notna()
                    & ~data["row"].eq(data["drop_from"])]
        worst[method] = part.loc[part["drop"].idxmax(), "row"] if len(part) else None
    if None in worst.values():
        return [Check(NO_RUNS, what)]
    diff = table.drops_apart(data, worst["simclr"], worst["byol"], noise)
    return [check(diff, f"{what} (at strength {worst['byol']} vs {worst['simclr']})"),
            table.byol_loses_less(data, "strengths", noise)]


TABLES = (build, build_strength)
