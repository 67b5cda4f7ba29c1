"""Table 5b: predictor x target network x contrastive weight beta, with SimCLR among the rows.

The paper's shape: BYOL (predictor, target network, beta = 0) is best; with beta = 0, dropping
the predictor or the target network collapses; every beta = 1 variant (SimCLR is predictor no,
target no, beta 1) stays far from collapse, a few points below BYOL.
"""

from __future__ import annotations

import pandas as pd

from byol_ray.tables.axes import parse_switches
from byol_ray.tables.cells import find_cell
from byol_ray.tables.protocol import describe
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
from byol_ray.tables.verdict import Check, far_below, known, order_check, verdict_line

ABLATION = "target_network"
BYOL_ROW = "pred=yes,target=yes,beta=0"
_COLLAPSING = ("pred=yes,target=no,beta=0", "pred=no,target=yes,beta=0",
               "pred=no,target=no,beta=0")


def _method_name(row: str, method: str) -> str:
    if method == "simclr":
        return "SimCLR"
    return "BYOL" if row == BYOL_ROW else f"{method.upper() if method else '?'} variant"


def build_table_5b(cells: pd.DataFrame, metric: str = "linear",
                   floor: float | None = None) -> Table:
    """Table 5b from averaged cells: the paper's eight rows in its order (a row per method
    where both a BYOL variant and SimCLR ran it), then any rows only we ran."""
    refs = {r.row: r for r in references("table_5b")}
    ours = cells[cells["ablation"].eq(ABLATION)]
    rows = [*refs, *sorted(set(ours["ablation_value"]) - set(refs))]
    keys = []
    for row in rows:
        methods = sorted(ours.loc[ours["ablation_value"].eq(row), "method"].unique())
        keys += [(row, m) for m in methods or [refs[row].method]]
    records = [cell_record(row, _method_name(row, m), m, find_cell(cells, ABLATION, row, m),
                           refs.get(row)) for row, m in keys]
    data = data_frame(records)
    switches = [parse_switches(row) for row, _ in keys]
    tick = {True: "✓", False: "–", None: "?"}
    display = pd.DataFrame({
        "predictor": [tick[s[0] if s else None] for s in switches],
        "target network": [tick[s[1] if s else None] for s in switches],
        "β": [f"{s[2]:g}" if s else "?" for s in switches],
        "method": [r["label"] for r in records],
        "ours: top-1 (%)": [r["cell"] for r in records],
        "protocol (ours)": [row_protocol([r]) for r in records],
        PAPER_TOP1: [format_paper(refs.get(row)) for row, _ in keys],
    })
    return Table(
        key="table_5b",
        title="Table 5b: predictor, target network and contrastive weight β (SimCLR included)",
        caption=f"{describe(metric)} Paper values: {sources(data)}. Rows that match a paper row "
                "by (predictor, target network, β) carry its value; SimCLR is the paper's "
                "(–, –, 1) row.",
        display=display,
        data=data,
        verdict=verdict_line(_checks(data, floor or 0.0)),
        notes=failure_notes(data),
    )


def _checks(data: pd.DataFrame, floor: float) -> list[Check]:
    ok = data[data["status"].eq("ok")]
    means = dict(zip(ok["row"] + "/" + ok["method"], ok["mean"], strict=True))
    byol = means.get(f"{BYOL_ROW}/byol")
    others = {k: v for k, v in means.items() if k != f"{BYOL_ROW}/byol"}
    checks = []
    if byol is None or not others:
        checks.append(Check(None, "BYOL (predictor, target, β = 0) is the best row"))
    else:
        runner_up = max(others.values())
        checks.append(Check(byol >= runner_up, f"BYOL (predictor, target, β = 0) is the best "
                            f"row ({byol:.1f} vs next {runner_up:.1f})"))
    best = max(means.values()) if means else float("nan")
    collapsing = ok[ok["row"].isin(_COLLAPSING)]
    fell = [(r.n_collapsed == r.n_seeds) or far_below(r.mean, best, floor)
            for r in collapsing.itertuples()]
    what = "β = 0 without predictor or target collapses or falls far below the best"
    checks.append(Check(all(fell), f"{what}: {sum(fell)}/{len(fell)} rows") if fell
                  else Check(None, what))
    contrastive = ok[ok["row"].str.endswith("beta=1")]
    held = [(r.n_collapsed == 0) and not far_below(r.mean, best, floor)
            for r in contrastive.itertuples()]
    what = "β = 1 rows (SimCLR included) neither collapse nor fall far below the best"
    checks.append(Check(all(held), f"{what}: {sum(held)}/{len(held)} rows") if held
                  else Check(None, what))
    byol_only = data[data["method"].eq("byol")]
    ours = known(dict(zip(byol_only["row"], byol_only["mean"], strict=True)))
    paper = known(dict(zip(byol_only["row"], byol_only["paper_top1"], strict=True)))
    return [*checks, order_check(ours, paper, "BYOL-variant rows")]
