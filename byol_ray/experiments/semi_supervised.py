"""Table 2: semi-supervised fine-tuning on 1% and 10% of the labels [P Table 2a, App. C.2]
where trials ran it (`byol-ray eval finetune`, a sweep's `--eval finetune`)."""

import pandas as pd

from byol_ray.experiments.baseline import protocol_rows
from byol_ray.tables import table
from byol_ray.tables.cells import aggregate, describe, has_protocol
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import above, check

SHARES = ("1pct", "10pct")
REFERENCE = references("table_2")


def build(inputs: table.Inputs) -> table.Table | None:
    """Table 2 (semi-supervised), where trials ran it: fine-tuning on 1% and 10% of the
    labels, our trials' `eval_finetune_{1,10}pct/test_top1` beside the paper's 53.2% / 68.8%
    (BYOL)."""
    runs = inputs.runs
    if not any(has_protocol(runs, f"finetune_{share}") for share in SHARES):
        return None
    refs = {r.row: r for r in REFERENCE}
    records, checks, columns = [], [], {}
    for share in SHARES:
        cells = aggregate(runs, f"finetune_{share}")
        part = [table.cell_record(f"{row}_{share}", label, row, cell,
                                  refs[share] if row == "byol" else None)
                for row, label, cell in protocol_rows(cells)]
        records += part
        percent = share.removesuffix("pct")
        columns[f"ours: {percent}% labels"] = [r["cell"] for r in part]
        columns[f"paper: {percent}% labels"] = [table.format_paper(refs[share]) if r["method"] ==
                                                "byol" else table.NOT_IN_PAPER for r in part]
        found = table.estimates(table.data_frame(part))
        trained, floor = found.get(f"byol_{share}"), found.get(f"random_init_{share}")
        difference = above(trained, floor, inputs.noise) if trained and floor else None
        checks.append(check(difference, f"BYOL above the random-init encoder fine-tuned on "
                                        f"{percent}% of the labels"))
    data = table.data_frame(records)
    labels = [label for _, label, _ in protocol_rows(aggregate(runs, "finetune_1pct"))]
    protocols = [table.row_protocol([a, b]) for a, b in zip(records[:3], records[3:], strict=True)]
    display = pd.DataFrame({"method": labels, **columns, "protocol (ours)": protocols})
    return table.make("table_2", "Table 2: semi-supervised fine-tuning (1% / 10% of the labels)",
                      f"{describe('finetune_1pct')} Paper values: {table.sources(data)}.",
                      display, data, checks)


TABLES = (build,)
