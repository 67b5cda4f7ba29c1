"""Table 5a: BYOL's top-1 against the target network's EMA decay rate tau_base (held constant).

The paper's shape: tau around 0.99 is best; tau = 1 (the target stays a random network) and
tau = 0 (the target is the online network, no EMA: collapse) fall far below it.
"""

from __future__ import annotations

import pandas as pd

from byol_ray.tables.axes import numeric
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

ABLATION = "tau_base"


def _label(tau: float) -> str:
    if tau == 1:
        return "constant random network"
    if tau == 0:
        return "stop gradient of online (no EMA)"
    return "moving average of online"


def build_table_5a(cells: pd.DataFrame, metric: str = "linear",
                   floor: float | None = None) -> Table:
    """Table 5a from averaged cells (see `cells.aggregate`): one row per tau_base of the paper
    or of our runs, largest first. `floor` is the random-init top-1 ("far below" is measured
    from it; 0 when unknown)."""
    refs = {r.row: r for r in references("table_5a")}
    ours = cells.loc[cells["ablation"].eq(ABLATION) & cells["method"].eq("byol"),
                     "ablation_value"]
    rows = sorted(set(refs) | set(ours), key=numeric, reverse=True)
    records = [cell_record(row, _label(numeric(row)), "byol",
                           find_cell(cells, ABLATION, row, "byol"), refs.get(row))
               for row in rows]
    data = data_frame(records)
    display = pd.DataFrame({
        "τ_base": rows,
        "target": [r["label"] for r in records],
        "ours: BYOL top-1 (%)": [r["cell"] for r in records],
        "protocol (ours)": [row_protocol([r]) for r in records],
        PAPER_TOP1: [format_paper(refs.get(row)) for row in rows],
    })
    return Table(
        key="table_5a",
        title="Table 5a: EMA decay rate τ_base of the target network (BYOL)",
        caption=f"{describe(metric)} Paper values: {sources(data)}.",
        display=display,
        data=data,
        verdict=verdict_line(_checks(data, floor or 0.0)),
        notes=failure_notes(data),
    )


def _checks(data: pd.DataFrame, floor: float) -> list[Check]:
    ours = known(dict(zip(data["row"], data["mean"], strict=True)))
    paper = known(dict(zip(data["row"], data["paper_top1"], strict=True)))
    interior = [r for r in ours if 0 < numeric(r) < 1]
    if len(ours) < 2 or not interior:
        return [Check(None, "best τ_base strictly between 0 and 1"),
                Check(None, "τ_base = 0 and 1 far below the best")]
    best = max(ours, key=ours.get)
    checks = [Check(best not in ("0", "1"), f"best τ_base = {best} (paper: 0.99)")]
    for extreme in ("0", "1"):
        if extreme not in ours or extreme == best:
            checks.append(Check(None if extreme not in ours else False,
                                f"τ_base = {extreme} far below the best"))
            continue
        checks.append(Check(far_below(ours[extreme], ours[best], floor),
                            f"τ_base = {extreme} far below the best ({ours[extreme]:.1f} vs "
                            f"{ours[best]:.1f}; far = under half the gain over random-init "
                            f"{floor:.1f})"))
    return [*checks, order_check(ours, paper, "τ_base rows")]
