"""The paper's reference values (arXiv 2006.07733): each experiment module holds its own
(`REFERENCE`, every value naming its table or figure); this gathers them.

Every value is ImageNet top-1 (%) under the paper's linear evaluation, except Table 4a's
(`table_4a`): VOC detection AP50 and segmentation mIoU (%), in the same `top1` field, their
row saying which. Rows are keyed like our runs' `ablation_value` tag, so that they align
with our cells: `0.99` (tau_base), `pred=yes,target=no,beta=1`, `4096` (batch), `remove_flip`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import pandas as pd

from byol_ray.experiments import paper_experiments

PAPER = "Grill et al. 2020, Bootstrap Your Own Latent, arXiv 2006.07733"
PAPER_PROTOCOL = "linear probe, offline, ImageNet val (paper)"


@dataclass(frozen=True)
class Reference:
    """One value of the paper: where it sits (table, row, method), what it is, where from."""

    table: str
    row: str
    method: str
    top1: float
    collapsed: bool
    label: str
    source: str


def references(table: str | None = None) -> list[Reference]:
    """One table's reference values (or all), in the paper's row order."""
    found = [r for module in paper_experiments() for r in module.REFERENCE]
    return [r for r in found if table is None or r.table == table]


def reference_frame(table: str | None = None) -> pd.DataFrame:
    """The reference values as a DataFrame (one table's, or all), in the paper's row order."""
    return pd.DataFrame([asdict(r) for r in references(table)],
                        columns=[f.name for f in fields(Reference)])
