"""Fig. 3b: BYOL and SimCLR with augmentations removed (drop from the full recipe), and the
continuous colour `strength` axis when the sweep ran it.

The paper's shape: removing augmentations hurts SimCLR more than BYOL at every removal (crop
only: BYOL -13.1, SimCLR -27.6 points); removing colour hurts both most after crop only.
"""

from __future__ import annotations

import pandas as pd

from byol_ray.tables.axes import numeric
from byol_ray.tables.cells import find_cell
from byol_ray.tables.drops import (
    METHODS,
    byol_loses_less,
    display_frame,
    drop_records,
    drops_frame,
    method_values,
)
from byol_ray.tables.protocol import describe
from byol_ray.tables.reference import reference_frame, references
from byol_ray.tables.table import Table, failure_notes, sources
from byol_ray.tables.verdict import Check, known, order_check, verdict_line

RECIPE, STRENGTH = "recipe", "strength"
BASELINE = "baseline"


def build_fig_3b(cells: pd.DataFrame, metric: str = "linear",
                 floor: float | None = None) -> Table:
    """Fig. 3b as a table: the paper's removals in its order (then any other recipe we ran),
    each method's top-1 and drop from its `baseline` recipe."""
    refs = {(r.row, r.method): r for r in references("fig_3b")}
    paper_rows = reference_frame("fig_3b")
    labels = dict(zip(paper_rows["row"], paper_rows["label"], strict=True))
    ours = cells[cells["ablation"].eq(RECIPE) & cells["method"].isin(METHODS)]
    names = [*labels, *sorted(set(ours["ablation_value"]) - set(labels))]
    rows = [(n, labels.get(n, n.replace("_", " "))) for n in names]

    def lookup(row: str, method: str) -> dict | None:
        return find_cell(cells, RECIPE, row, method)

    records = drop_records(rows, lookup, refs, dict.fromkeys(METHODS, BASELINE), BASELINE)
    data = drops_frame(records)
    return Table(
        key="fig_3b",
        title="Fig. 3b: augmentations removed, BYOL vs SimCLR (top-1 and drop from baseline)",
        caption=f"{describe(metric)} Drop = top-1 with the full recipe (baseline) minus top-1 "
                f"with the removal. Paper values: {sources(data)}.",
        display=display_frame("augmentations", rows, records, refs, BASELINE),
        data=data,
        verdict=verdict_line(_checks(data)),
        notes=failure_notes(data),
    )


def _checks(data: pd.DataFrame) -> list[Check]:
    checks = [byol_loses_less(data, "removals")]
    for method, name in (("byol", "BYOL"), ("simclr", "SimCLR")):
        ours = known(method_values(data, method, "mean"))
        paper = known(method_values(data, method, "paper_top1"))
        checks.append(order_check(ours, paper, f"{name} recipes"))
    return checks


def has_strength(cells: pd.DataFrame) -> bool:
    """Whether any run swept the colour strength (the table is built only then)."""
    return bool(cells["ablation"].eq(STRENGTH).any())


def build_fig_3b_strength(cells: pd.DataFrame, metric: str = "linear",
                          floor: float | None = None) -> Table:
    """Top-1 against colour strength for BYOL and SimCLR, drop from strength 1 (the baseline
    recipe cell stands for strength 1 when no strength-1 cell ran). No paper values."""
    ours = cells[cells["ablation"].eq(STRENGTH) & cells["method"].isin(METHODS)]
    values = sorted(set(ours["ablation_value"]) | {"1"}, key=numeric)
    rows = [(v, v) for v in values]

    def lookup(row: str, method: str) -> dict | None:
        cell = find_cell(cells, STRENGTH, row, method)
        if cell is None and row == "1":
            cell = find_cell(cells, RECIPE, BASELINE, method)
        return cell

    records = drop_records(rows, lookup, {}, dict.fromkeys(METHODS, "1"), None)
    data = drops_frame(records)
    return Table(
        key="fig_3b_strength",
        title="Fig. 3b (extension): colour-jitter strength, BYOL vs SimCLR",
        caption=f"{describe(metric)} Drop = top-1 at strength 1 (the baseline recipe) minus "
                "top-1 at this strength. The paper has no values on this axis; its claim "
                "(§5) is that BYOL is less sensitive to the augmentations than SimCLR.",
        display=display_frame("colour strength", rows, records, {}),
        data=data,
        verdict=verdict_line(_strength_checks(data)),
        notes=failure_notes(data),
    )


def _strength_checks(data: pd.DataFrame) -> list[Check]:
    byol, simclr = (known(method_values(data, m, "drop")) for m in METHODS)
    if not byol or not simclr:
        return [Check(None, "BYOL's largest drop smaller than SimCLR's")]
    worst_byol, worst_simclr = max(byol.values()), max(simclr.values())
    return [Check(worst_byol <= worst_simclr + 1e-9,
                  f"BYOL's largest drop ≤ SimCLR's ({worst_byol:.1f} vs {worst_simclr:.1f})"),
            byol_loses_less(data, "strengths")]
