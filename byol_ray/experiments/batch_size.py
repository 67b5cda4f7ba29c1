"""Fig. 3a: BYOL and SimCLR over the batch size B [P §5, Fig. 3a], by the paper's protocol.

Every cell keeps the preset's optimiser batch (`data.batch_size`, 4096 on ImageNet), learning
rate, schedule and EMA: for B = batch / N the paper averages the gradients of N batches of B in
parallel [P §5 "Batch size"], so only what a batch of B computes by itself changes, its BN
statistics and SimCLR's negatives (`data.group_size=B`). Batches above the preset's are left out.
"""

from byol_ray.core.presets import get_preset
from byol_ray.experiments.grid import Cell, Grid, integer
from byol_ray.tables import table
from byol_ray.tables.cells import describe, find_cell, numeric
from byol_ray.tables.reference import references

AXIS = "batch_size"
PAPER = (4096, 2048, 1024, 512, 256, 128, 64)  # Fig. 3a, largest first
# cpu-mini: its optimiser batch of 64 and groups of 4, 16x smaller, where the paper's drops
# differ most (4096 -> 256: BYOL 0.7, SimCLR 3.6 points); 64x would leave one row per group.
REDUCED = {"cpu-mini": (64, 4)}


def cells(preset: str) -> list[Cell]:
    """BYOL and SimCLR at each batch B up to the preset's (B = the preset's: no groups)."""
    batch = get_preset(preset).data.batch_size
    return [
        Cell(method, AXIS, str(b), (f"data.group_size={b}",) if b < batch else ())
        for method in table.METHODS
        for b in REDUCED.get(preset, PAPER) if b <= batch
    ]


GRID = Grid("batch_size", "Fig. 3a: top-1 against batch size, BYOL vs SimCLR", cells,
            {AXIS: integer})

REFERENCE = references("fig_3a")


def build(inputs: table.Inputs) -> table.Table:
    """Fig. 3a as a table: a row per batch size (the paper's and ours, largest first); drops
    are from each method's largest batch that finished (the paper's: from 4096)."""
    cells, refs = inputs.cells, {(r.row, r.method): r for r in REFERENCE}
    ours = cells[cells["ablation"].eq(AXIS) & cells["method"].isin(inputs.methods)]
    values = sorted({row for row, _ in refs} | set(ours["ablation_value"]), key=numeric,
                    reverse=True)
    finished = ours[ours["status"].eq("ok")]
    ours_from = {
        m: max(finished.loc[finished["method"].eq(m), "ablation_value"], key=numeric,
               default=None)
        for m in inputs.methods
    }
    data, display = table.drop_frames("batch size", [(v, v) for v in values],
                                      lambda row, method: find_cell(cells, AXIS, row, method),
                                      refs, ours_from, str(PAPER[0]), inputs.methods)
    notes = table.failure_notes(data)
    if len({v for v in ours_from.values() if v}) > 1:
        notes.append("Our drops start from different batches: "
                     + ", ".join(f"{m} from {v}" for m, v in ours_from.items()))
    return table.make(
        "fig_3a", "Fig. 3a: batch size, BYOL vs SimCLR (top-1 and drop from the largest batch)",
        f"{describe(inputs.metric)} Drop = top-1 at the largest batch minus top-1 at this batch "
        f"(ours: each method's largest finished batch; paper: 4096). "
        f"Paper values: {table.sources(data)}.", display, data,
        table.drop_checks(data, "smaller batches", "batch sizes", inputs.noise), notes)


TABLES = (build,)
