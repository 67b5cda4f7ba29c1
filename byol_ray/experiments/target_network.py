"""Table 5b: predictor x target network x contrastive weight beta [P Table 5b].

beta weights a contrastive term (temperature 0.1); "no target network" makes the target side
the online projection itself, with gradients, as in SimCLR. Every row is BYOL's objective
under BYOL's hyper-parameters: the paper's (–, –, 1) row (69.4) is SimCLR's loss in that
setting, 4 + 4α·NT-Xent here, not `method=simclr` (SimCLR's own settings, compared with
Fig. 3a's 67.9 by `batch_size`), so no SimCLR cell runs or shows here.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from byol_ray.experiments.grid import Cell, Grid
from byol_ray.tables import table, verdicts
from byol_ray.tables.cells import describe, find_cell
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import NO_RUNS, Check, all_of, check, tally

AXIS = "target_network"


class Switches(NamedTuple):
    """A row of Table 5b: predictor, target network, contrastive weight β."""

    predictor: bool
    target: bool
    beta: float

    @property
    def tag(self) -> str:
        """The row key and `ablation_value` tag: 'pred=yes,target=no,beta=1'."""
        yes = {True: "yes", False: "no"}
        return f"pred={yes[self.predictor]},target={yes[self.target]},beta={self.beta:g}"

    @classmethod
    def parse(cls, text: str) -> Switches | None:
        """A stored tag, e.g. 'pred=True,target=no,beta=1.0'; None if it is not that shape."""
        parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        if set(parts) != {"pred", "target", "beta"}:
            return None
        flags = {"yes": True, "true": True, "no": False, "false": False}
        try:
            return cls(flags[parts["pred"].strip().lower()],
                       flags[parts["target"].strip().lower()], float(parts["beta"]))
        except (KeyError, ValueError):
            return None


BYOL = Switches(True, True, 0)
SIMCLR_LOSS = Switches(False, False, 1)  # the paper's "SimCLR" row: its loss, BYOL's settings
PAPER = (BYOL, Switches(True, True, 1), Switches(False, True, 1), SIMCLR_LOSS,  # paper's order
         Switches(True, False, 1), Switches(True, False, 0), Switches(False, True, 0),
         Switches(False, False, 0))
REDUCED = {"cpu-mini": (BYOL, Switches(False, True, 0), Switches(True, False, 0), SIMCLR_LOSS)}


def cells(preset: str) -> list[Cell]:
    """One BYOL-variant cell per row (the (–, –, 1) row included: SimCLR's loss)."""
    return [
        Cell("byol", AXIS, s.tag, (f"method.predictor={s.predictor}",
                                   f"method.target_network={s.target}", f"method.beta={s.beta}",
                                   "method.temperature=0.1"))
        for s in REDUCED.get(preset, PAPER)
    ]


def canonical(text: str) -> str:
    """A stored tag in the spelling of `Switches.tag`."""
    switches = Switches.parse(text)
    return switches.tag if switches else text


GRID = Grid("target_network", "Table 5b: predictor, target network and beta", cells,
            {AXIS: canonical})

REFERENCE = references("table_5b")  # keyed by `Switches.tag`, in the order of PAPER


def _label(row: str) -> str:
    if row == BYOL.tag:
        return "BYOL"
    return "SimCLR's loss, BYOL's settings" if row == SIMCLR_LOSS.tag else "BYOL variant"


def build(inputs: table.Inputs) -> table.Table:
    """Table 5b: the paper's eight rows in its order, then any rows only we ran; BYOL-variant
    cells only (a `method=simclr` run tagged with this axis by an older sweep is left out)."""
    cells, refs = inputs.cells, {r.row: r for r in REFERENCE}
    ours = cells[cells["ablation"].eq(AXIS) & cells["method"].eq("byol")]
    switches: dict[str, Switches | None] = {s.tag: s for s in PAPER}
    for row in sorted(set(ours["ablation_value"]) - set(refs)):
        switches[row] = Switches.parse(row)
    records = [table.cell_record(row, _label(row), "byol", find_cell(cells, AXIS, row, "byol"),
                                 refs.get(row)) for row in switches]
    data = table.data_frame(records)
    shown = list(switches.values())
    tick = {True: "✓", False: "–", None: "?"}
    display = table.cell_display({
        "predictor": [tick[s.predictor if s else None] for s in shown],
        "target network": [tick[s.target if s else None] for s in shown],
        "β": [f"{s.beta:g}" if s else "?" for s in shown],
        "method": [r["label"] for r in records]}, records, [refs.get(row) for row in switches])
    return table.make(
        "table_5b", "Table 5b: predictor, target network and contrastive weight β",
        f"{describe(inputs.metric)} Paper values: {table.sources(data)}. Rows that match a "
        "paper row by (predictor, target network, β) carry its value. The (–, –, 1) row is "
        "SimCLR's loss under BYOL's hyper-parameters, as the paper's 69.4; SimCLR with its own "
        "settings (`method=simclr`) is compared with the paper's 67.9 in Fig. 3a.",
        display, data, checks(data, switches, inputs))


def checks(data: pd.DataFrame, switches: dict[str, Switches | None],
           inputs: table.Inputs) -> list[Check]:
    """BYOL the best row; β = 0 without predictor or target collapsed or far below the best;
    β = 1 rows neither; the rows ordered as the paper's (`switches`: row -> key). Only cells
    that the verdicts may compare (`Estimate.of`) take part."""
    floor, noise = inputs.floor, inputs.noise
    cells = {r["row"]: r for r in data.to_dict("records")}
    means = table.estimates(data)
    byol = means.get(BYOL.tag)
    others = {k: v for k, v in means.items() if k != BYOL.tag}
    what = "BYOL (predictor, target, β = 0) is the best row"
    if byol is None or not others:
        found = [Check(NO_RUNS, what)]
    else:
        runner_up = max(others.values(), key=lambda e: e.mean)
        found = [check(verdicts.above(byol, runner_up, noise),
                       f"{what} ({byol.mean:.1f} vs next {runner_up.mean:.1f})")]
    best = max(means.values(), key=lambda e: e.mean, default=None)
    for beta, collapse, what in (
            (0, verdicts.AGREES, "β = 0 without predictor or target collapses or falls far "
                                 "below the best"),
            (1, verdicts.DISAGREES, "β = 1 rows neither collapse nor fall far below the best")):
        rows = [k for k in means if (s := switches[k]) and s.beta == beta and s != BYOL]
        # far below the best: as the paper's β = 0 rows, unlike its β = 1 rows
        outcomes = [collapse if cells[k]["n_collapsed"] == cells[k]["n_seeds"] else
                    _far(verdicts.far_below(means[k], best, floor, noise), beta == 0)
                    for k in rows]
        found.append(Check(all_of(outcomes), f"{what}: {tally(outcomes)} of {len(outcomes)} "
                                             "rows") if outcomes else Check(NO_RUNS, what))
    return [*found, verdicts.order_check(means, table.paper_values(data), "Table 5b rows",
                                         noise)]


def _far(difference: verdicts.Difference, expected: bool) -> str:
    """✓ when the row is far below the best as `expected` (✗ when the other way)."""
    sign = 1.0 if expected else -1.0
    return verdicts.Difference(sign * difference.value, difference.se).outcome


TABLES = (build,)
