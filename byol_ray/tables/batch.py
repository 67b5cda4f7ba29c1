"""Fig. 3a: BYOL and SimCLR top-1 against the global batch size, and the drop from the largest.

The paper's shape: BYOL loses little down to batch 256 while SimCLR loses more at every batch
below 4096 (at 256: BYOL -0.7, SimCLR -3.6 points); at 64 both fall, BYOL more (-12.8 vs
-8.7: batch-norm statistics, says the paper).
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
from byol_ray.tables.reference import references
from byol_ray.tables.table import Table, failure_notes, sources
from byol_ray.tables.verdict import known, order_check, verdict_line

ABLATION = "batch_size"


def build_fig_3a(cells: pd.DataFrame, metric: str = "linear",
                 floor: float | None = None) -> Table:
    """Fig. 3a as a table: a row per batch size (the paper's and ours, largest first); drops
    are from each method's largest batch that finished (the paper's: from 4096)."""
    refs = {(r.row, r.method): r for r in references("fig_3a")}
    ours = cells[cells["ablation"].eq(ABLATION) & cells["method"].isin(METHODS)]
    values = sorted({row for row, _ in refs} | set(ours["ablation_value"]), key=numeric,
                    reverse=True)
    rows = [(v, v) for v in values]
    finished = ours[ours["status"].eq("ok")]
    ours_from = {
        m: max(finished.loc[finished["method"].eq(m), "ablation_value"], key=numeric,
               default=None)
        for m in METHODS
    }

    def lookup(row: str, method: str) -> dict | None:
        return find_cell(cells, ABLATION, row, method)

    records = drop_records(rows, lookup, refs, ours_from, paper_from="4096")
    data = drops_frame(records)
    notes = failure_notes(data)
    if len({v for v in ours_from.values() if v}) > 1:
        notes.append("Our drops start from different batches: "
                     + ", ".join(f"{m} from {v}" for m, v in ours_from.items()))
    return Table(
        key="fig_3a",
        title="Fig. 3a: batch size, BYOL vs SimCLR (top-1 and drop from the largest batch)",
        caption=f"{describe(metric)} Drop = top-1 at the largest batch minus top-1 at this "
                f"batch (ours: each method's largest finished batch; paper: 4096). "
                f"Paper values: {sources(data)}.",
        display=display_frame("batch size", rows, records, refs, "4096"),
        data=data,
        verdict=verdict_line(_checks(data)),
        notes=notes,
    )


def _checks(data: pd.DataFrame) -> list:
    checks = [byol_loses_less(data, "smaller batches")]
    for method, name in (("byol", "BYOL"), ("simclr", "SimCLR")):
        ours = known(method_values(data, method, "mean"))
        paper = known(method_values(data, method, "paper_top1"))
        checks.append(order_check(ours, paper, f"{name} batch sizes"))
    return checks
