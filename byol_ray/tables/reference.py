"""The paper's reference values (arXiv 2006.07733), shipped as `reference.csv` beside this file;
each experiment module reads its own table's rows (`references`).

Every value is ImageNet top-1 (%) under the paper's linear evaluation and names its source
(table or figure), except Table 4a's (`table_4a`): VOC detection AP50 and segmentation mIoU
(%), in the same `top1` column, their row saying which. Rows are keyed like our runs'
`ablation_value` tag, so that they align with our cells: `0.99` (tau_base),
`pred=yes,target=no,beta=1`, `4096` (batch), `remove_flip`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from io import StringIO

import pandas as pd

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


@cache
def _frame() -> pd.DataFrame:
    text = resources.files("byol_ray.tables").joinpath("reference.csv").read_text("utf-8")
    frame = pd.read_csv(StringIO(text), dtype={"row": str}, keep_default_na=False)
    frame["top1"] = frame["top1"].astype(float)
    frame["collapsed"] = frame["collapsed"].eq("yes")
    return frame


def reference_frame(table: str | None = None) -> pd.DataFrame:
    """The reference values as a DataFrame (one table's, or all), in the paper's row order."""
    frame = _frame()
    if table is not None:
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True).copy()


def references(table: str) -> list[Reference]:
    """One table's reference values as `Reference` records, in the paper's row order."""
    return [Reference(**record) for record in reference_frame(table).to_dict("records")]
