"""Does BYOL need batch statistics? BYOL and SimCLR with BN removed or replaced (opt-in grid).

Two studies: Fetterman & Albrecht (Untitled AI, 2020, "Understanding self-supervised and
contrastive learning with BYOL"): BYOL without BN in its MLP heads performs no better than
random, SimCLR without it still learns (STL-10, ResNet-18; no numbers we could cite). Richemond
et al. 2020 ("BYOL works even without batch statistics", arXiv 2010.10241): no BN anywhere
collapses BYOL, BN in the encoder only keeps most of its accuracy, and group norm + weight
standardisation (no batch statistics anywhere) reaches 73.9% against BN's 74.3% (abstract).
Their BN ablation table (300 epochs) could not be read from stored text: its rows (0.1% with no
BN, 72.1% with BN in the encoder only, as reviews quote them) are left out of reference.csv.

The rows "no BN in projector and predictor" and "BN in the encoder only" are one network
(`encoder_bn_only`). Not in `reproduce`'s default set (`experiments.OPT_IN`): run it with
`python sweeps/normalization.py` or `byol-ray reproduce --grids normalization`.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from byol_ray.core.methods import label
from byol_ray.experiments.grid import Cell, Grid
from byol_ray.tables import table, verdicts
from byol_ray.tables.cells import describe, find_cell
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import NO_RUNS, Check, Estimate, check, contrast

AXIS = "normalization"
FEW_POINTS = 3.0  # "within a few points": Richemond et al.'s GN+WS is 0.4 below BN (abstract)


class Row(NamedTuple):
    """One network of the grid: its label and `model.*_norm` settings."""

    label: str
    encoder: str
    projector: str
    predictor: str

    @property
    def overrides(self) -> tuple[str, ...]:
        """The config overrides of this row."""
        return (f"model.encoder_norm={self.encoder}", f"model.projector_norm={self.projector}",
                f"model.predictor_norm={self.predictor}")


ROWS = {
    "bn": Row("BN everywhere (the paper's)", "batch", "batch", "batch"),
    "encoder_bn_only": Row("BN in the encoder only (no BN in projector and predictor)",
                           "batch", "none", "none"),
    "no_bn": Row("no normalisation anywhere", "none", "none", "none"),
    "gn_ws": Row("GN + WS everywhere (no batch statistics)", "group_ws", "group", "group"),
    "affine_init": Row("no BN, data-dependent affine init (encoder)", "affine_init", "none",
                       "none"),
}


def cells(preset: str) -> list[Cell]:
    """Every row for BYOL and SimCLR (10 trials a seed, on every preset)."""
    return [Cell(method, AXIS, key, row.overrides) for method in table.METHODS
            for key, row in ROWS.items()]


GRID = Grid("normalization", "BYOL without batch statistics (Richemond et al. 2020; "
            "Fetterman & Albrecht 2020), BYOL vs SimCLR", cells)

REFERENCE = references("normalization")


def build(inputs: table.Inputs) -> table.Table | None:
    """A row per network (ours, then any other value we ran), BYOL and SimCLR side by side
    with the papers' values where they could be verified; None when no trial ran the grid
    (it is opt-in: reports without it show no empty table)."""
    cells, refs = inputs.cells, {(r.row, r.method): r for r in REFERENCE}
    ours = cells[cells["ablation"].eq(AXIS) & cells["method"].isin(inputs.methods)]
    if ours.empty:
        return None
    rows = [*ROWS, *sorted(set(ours["ablation_value"]) - set(ROWS))]
    records = [table.cell_record(row, ROWS[row].label if row in ROWS else row, method,
                                 find_cell(cells, AXIS, row, method), refs.get((row, method)))
               for method in inputs.methods for row in rows]
    data = table.data_frame(records)
    by_key = {(r["row"], r["method"]): r for r in records}
    columns: dict[str, list[str]] = {"normalisation": [by_key[(r, "byol")]["label"]
                                                       for r in rows]}
    for method in inputs.methods:
        columns[f"{label(method)} ours (%)"] = [by_key[(r, method)]["cell"] for r in rows]
    columns["protocol (ours)"] = [table.row_protocol([by_key[(r, m)] for m in inputs.methods])
                                  for r in rows]
    for method in table.METHODS:
        columns[f"{label(method)} paper (%)"] = [table.format_paper(refs.get((r, method)))
                                                       for r in rows]
    sources = table.sources(data) or "none verified"
    return table.make(
        "normalization", "BYOL without batch statistics: BN removed or replaced, BYOL vs SimCLR",
        f"{describe(inputs.metric)} Paper values: {sources}; Richemond et al.'s 300-epoch BN "
        "ablation table and Fetterman & Albrecht's numbers could not be verified and are left "
        "empty.", pd.DataFrame(columns), data, checks(data, inputs))


def checks(data: pd.DataFrame, inputs: table.Inputs) -> list[Check]:
    """BYOL with no BN collapses or falls far below BN; SimCLR with no BN neither; GN + WS
    within `FEW_POINTS` of BN (BYOL)."""
    cells = {(r["row"], r["method"]): r for r in data[data["status"].eq("ok")].to_dict("records")}
    found = []
    for method, collapses in (("byol", True), ("simclr", False)):
        name = label(method)
        claim = "collapses or falls" if collapses else "neither collapses nor falls"
        what = f"{name} with no normalisation {claim} far below {name} with BN"
        bn, none = cells.get(("bn", method)), cells.get(("no_bn", method))
        if bn is None or none is None:
            found.append(Check(NO_RUNS, what))
        elif none["n_collapsed"] == none["n_seeds"]:
            outcome = verdicts.AGREES if collapses else verdicts.DISAGREES
            found.append(Check(outcome, f"{what}: [collapsed]"))
        else:
            far = verdicts.far_below(Estimate.of(none), Estimate.of(bn), inputs.floor,
                                     inputs.noise)
            sign = 1.0 if collapses else -1.0
            found.append(check(verdicts.Difference(sign * far.value, far.se), what))
    gn, bn = (Estimate.of(cells.get((row, "byol"))) for row in ("gn_ws", "bn"))
    what = f"BYOL with GN + WS within {FEW_POINTS:g} points of BYOL with BN"
    found.append(check(contrast([(1.0, gn), (-1.0, bn)], inputs.noise, FEW_POINTS)
                       if gn and bn else None, what))
    return found


TABLES = (build,)
