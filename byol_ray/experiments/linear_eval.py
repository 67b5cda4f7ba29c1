"""Table 1: the paper's linear evaluation [P Table 1a, App. C.1], where trials ran it.

Only where trials ran the paper's protocol (`byol-ray eval linear`, a sweep's `--eval
linear`): BYOL and SimCLR at the preset's setting and random-init, beside the paper's ImageNet
values. Elsewhere the `linear` metric also takes this evaluation where a trial has it.
"""

import pandas as pd

from byol_ray.experiments.baseline import RANDOM_INIT_SOURCE, protocol_rows
from byol_ray.report import table
from byol_ray.report.cells import PAPER_LINEAR, aggregate, describe, has_protocol
from byol_ray.report.reference import Reference
from byol_ray.report.table import Inputs, Table
from byol_ray.report.verdicts import Noise, above, check

REFERENCE = [
    Reference("table_1", "byol", "byol", 74.3, False, "BYOL ResNet-50, 1000 epochs",
              "arXiv 2006.07733, Table 1a (ImageNet, ResNet-50, 1000 epochs, linear "
              "evaluation, top-1)"),
    Reference("table_1", "random_init", "random_init", 1.4, False,
              "randomly initialised encoder", RANDOM_INIT_SOURCE),
]


def build(runs: pd.DataFrame, noise: Noise | None = None) -> Table:
    """Table 1 (linear evaluation): our trials' `eval_linear/test_top1` beside the paper's
    74.3% (BYOL, 1000 epochs) and 1.4% (random-init)."""
    cells = aggregate(runs, PAPER_LINEAR)
    refs = {r.row: r for r in REFERENCE}
    rows = protocol_rows(cells)
    records = [table.cell_record(row, label, row, cell, refs.get(row)) for row, label, cell in rows]
    data = table.data_frame(records)
    display = pd.DataFrame({
        "method": [r["label"] for r in records],
        "ours: top-1 (%)": [r["cell"] for r in records],
        "protocol (ours)": [table.row_protocol([r]) for r in records],
        "paper top-1 (%; linear evaluation, ImageNet val)": [table.format_paper(refs.get(r))
                                                             for r, *_ in rows],
    })
    found = table.estimates(data)
    trained, floor = found.get("byol"), found.get("random_init")
    what = "BYOL far above the random-init encoder under the linear evaluation"
    noise = table.noise_or_pooled(cells, noise)
    difference = above(trained, floor, noise) if trained and floor else None
    return Table.of("table_1", "Table 1: linear evaluation",
                    f"{describe(PAPER_LINEAR)} Paper values: {table.sources(data)}.", display, data,
                    [check(difference, what)])


def tables(inputs: Inputs) -> list[Table]:
    """Table 1 where trials ran the paper's linear evaluation."""
    return [build(inputs.runs, inputs.noise)] if has_protocol(inputs.runs, PAPER_LINEAR) else []
