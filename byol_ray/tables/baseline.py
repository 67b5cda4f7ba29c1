"""The random-init baseline: what an untrained encoder scores under the same protocol.

The paper's 1.4% (a fixed random ResNet-50 on ImageNet) is what BYOL's 72.5% should be read
against; on small data a random encoder scores far above chance, so ours is measured too:
by the sweeps' random-init run, and by every trial's own encoder before training (epoch 0).
Its value is also the floor the other tables' "far below the best" is measured from.
"""

from __future__ import annotations

import math

import pandas as pd

from byol_ray.tables.cells import RANDOM_INIT, aggregate, find_cell
from byol_ray.tables.protocol import BASELINE_COLUMN, METRIC_COLUMN, describe
from byol_ray.tables.reference import references
from byol_ray.tables.table import (
    PAPER_TOP1,
    Table,
    cell_record,
    data_frame,
    failure_notes,
    format_paper,
    row_protocol,
    sources,
)
from byol_ray.tables.verdict import Check, verdict_line

NOT_A_SWEEP_CELL = "not run by the sweeps"


def untrained_cell(runs: pd.DataFrame | None, metric: str) -> dict | None:
    """Every trained trial's epoch-0 evaluation (baseline/*) pooled into one cell: n counts
    trials, not seeds."""
    if runs is None:
        return None
    has_value = runs[BASELINE_COLUMN[metric]].notna() & ~runs["method"].eq(RANDOM_INIT).fillna(
        False)
    frame = runs[has_value].copy()
    frame[METRIC_COLUMN[metric]] = frame[BASELINE_COLUMN[metric]]
    frame = frame.assign(status="FINISHED", collapsed=math.nan, ablation="untrained",
                         ablation_value="epoch 0", method="untrained",
                         seed=pd.array([pd.NA] * len(frame), dtype="Int64"))
    cells = aggregate(frame, metric)
    return cells.iloc[0].to_dict() if len(cells) else None


def _random_init_cell(cells: pd.DataFrame) -> dict | None:
    found = cells[cells["method"].eq(RANDOM_INIT)]
    return found.iloc[0].to_dict() if len(found) else None


def _trained_byol(cells: pd.DataFrame) -> tuple[dict | None, str]:
    cell = find_cell(cells, "recipe", "baseline", "byol")
    if cell is not None:
        return cell, "BYOL, the preset's setting (Fig. 3b baseline cell)"
    cell = find_cell(cells, "target_network", "pred=yes,target=yes,beta=0", "byol")
    return cell, "BYOL, the preset's setting (Table 5b BYOL row)"


def build_baseline(cells: pd.DataFrame, runs: pd.DataFrame | None = None,
                   metric: str = "linear", floor: float | None = None) -> Table:
    """The random-init rows (its own run; every trial at epoch 0) beside trained BYOL and the
    paper's 1.4% / 72.5% / 74.3% (1000 epochs, not a sweep cell)."""
    refs = {r.row: r for r in references("baseline")}
    paper_byol = {r.row: r for r in references("fig_3b") if r.method == "byol"}["baseline"]
    byol_cell, byol_label = _trained_byol(cells)
    rows = [
        ("random_init", "random-init encoder (its own run, no training)",
         _random_init_cell(cells), refs["random_init"]),
        ("untrained", "untrained encoder of every trial (epoch 0; n = trials)",
         untrained_cell(runs, metric), refs["random_init"]),
        ("byol_default", byol_label, byol_cell, paper_byol),
        ("byol_1000_epochs", refs["byol_1000_epochs"].label, None, refs["byol_1000_epochs"]),
    ]
    records = [cell_record(row, label, cell["method"] if cell else ref.method, cell, ref)
               for row, label, cell, ref in rows]
    records[-1]["cell"] = NOT_A_SWEEP_CELL
    data = data_frame(records)
    display = pd.DataFrame({
        "encoder": [r["label"] for r in records],
        "ours: top-1 (%)": [r["cell"] for r in records],
        "protocol (ours)": [row_protocol([r]) for r in records],
        PAPER_TOP1: [format_paper(ref) for *_, ref in rows],
    })
    return Table(
        key="baseline",
        title="Random-init baseline",
        caption=f"{describe(metric)} Paper values: {sources(data)}.",
        display=display,
        data=data,
        verdict=verdict_line([_check(data)]),
        notes=failure_notes(data),
    )


def random_init_top1(table: Table) -> float | None:
    """Our random-init top-1 from a baseline table (its own run, else the trials' epoch 0)."""
    for row in ("random_init", "untrained"):
        value = table.data.loc[table.data["row"].eq(row), "mean"].iloc[0]
        if not math.isnan(value):
            return float(value)
    return None


def _check(data: pd.DataFrame) -> Check:
    means = dict(zip(data["row"], data["mean"], strict=True))
    random = next((means[r] for r in ("random_init", "untrained") if not math.isnan(means[r])),
                  math.nan)
    trained = means["byol_default"]
    if math.isnan(random) or math.isnan(trained):
        return Check(None, "trained BYOL far above the random-init encoder")
    return Check(trained > random, f"trained BYOL {trained:.1f} vs random-init {random:.1f} "
                                   f"({trained - random:+.1f} points; paper +71.1)")
