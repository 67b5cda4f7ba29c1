"""The random-init baseline: the untrained encoder under the same protocol [P §3: 1.4%],
beside BYOL trained at the preset's setting (also what Tables 1 and 2 list: `protocol_rows`).
"""

import pandas as pd

from byol_ray.experiments import augmentations, target_network
from byol_ray.tables import table
from byol_ray.tables.cells import describe, find_cell
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import above, check

RANDOM_INIT_LABEL = "random-init encoder (its own run, no training)"
NOT_A_SWEEP_CELL = "not run by the sweeps"
REFERENCE = references("baseline")  # random_init, byol_1000_epochs


def trained_byol(cells: pd.DataFrame) -> tuple[dict | None, str]:
    """BYOL at the preset's setting (Fig. 3b's baseline cell, else Table 5b's BYOL row)."""
    cell = find_cell(cells, augmentations.RECIPE, augmentations.BASELINE, "byol")
    if cell is not None:
        return cell, "BYOL, the preset's setting (Fig. 3b baseline cell)"
    cell = find_cell(cells, target_network.AXIS, target_network.BYOL.tag, "byol")
    return cell, "BYOL, the preset's setting (Table 5b BYOL row)"


def protocol_rows(cells: pd.DataFrame) -> list[tuple[str, str, dict | None]]:
    """(row, label, cell) of the methods the paper's Tables 1 and 2 list: BYOL and SimCLR at
    the preset's setting, and the random-init encoder."""
    byol, byol_label = trained_byol(cells)
    simclr = find_cell(cells, augmentations.RECIPE, augmentations.BASELINE, "simclr")
    return [("byol", byol_label, byol), ("simclr", "SimCLR, the preset's setting", simclr),
            ("random_init", RANDOM_INIT_LABEL, table.random_init_cell(cells))]


def build(inputs: table.Inputs) -> table.Table:
    """The random-init rows (its own run; every trial at epoch 0) beside trained BYOL and the
    paper's 1.4% / 72.5% / 74.3% (1000 epochs, not a sweep cell)."""
    cells, (random_init, byol_1000) = inputs.cells, REFERENCE
    paper_byol = next(r for r in augmentations.REFERENCE
                      if (r.row, r.method) == (augmentations.BASELINE, "byol"))
    byol_cell, byol_label = trained_byol(cells)
    rows = [
        ("random_init", RANDOM_INIT_LABEL, table.random_init_cell(cells), random_init),
        ("untrained", "untrained encoder of every trial (epoch 0; n = trials)",
         table.untrained_cell(inputs.runs, inputs.metric), random_init),
        ("byol_default", byol_label, byol_cell, paper_byol),
        ("byol_1000_epochs", byol_1000.label, None, byol_1000),
    ]
    records = [table.cell_record(row, label, cell["method"] if cell else ref.method, cell, ref)
               for row, label, cell, ref in rows]
    records[-1]["cell"] = NOT_A_SWEEP_CELL
    data = table.data_frame(records)
    display = table.cell_display({"encoder": [r["label"] for r in records]}, records,
                                 [ref for *_, ref in rows])
    floor, trained = inputs.floor, table.estimates(data).get("byol_default")
    what = "trained BYOL far above the random-init encoder"
    difference = above(trained, floor, inputs.noise) if floor and trained else None
    detail = (f"{what} ({trained.mean:.1f} vs {floor.mean:.1f}; paper +71.1)" if difference
              else what)
    return table.make("baseline", "Random-init baseline",
                      f"{describe(inputs.metric)} Paper values: {table.sources(data)}.",
                      display, data, [check(difference, detail)])


TABLES = (build,)
