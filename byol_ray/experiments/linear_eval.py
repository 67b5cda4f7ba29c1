"""Table 1: the paper's linear evaluation [P Table 1a, App. C.1] where trials ran it
(`byol-ray eval linear`, a sweep's `--eval linear`); elsewhere the `linear` metric also takes
this evaluation where a trial has it."""


from byol_ray.experiments.baseline import protocol_rows
from byol_ray.tables import table
from byol_ray.tables.cells import PAPER_LINEAR, aggregate, describe, has_protocol
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import above, check

REFERENCE = references("table_1")


def build(inputs: table.Inputs) -> table.Table | None:
    """Table 1 (linear evaluation), where trials ran it: our trials' `eval_linear/test_top1`
    beside the paper's 74.3% (BYOL, 1000 epochs) and 1.4% (random-init)."""
    if not has_protocol(inputs.runs, PAPER_LINEAR):
        return None
    cells = aggregate(inputs.runs, PAPER_LINEAR)
    refs = {r.row: r for r in REFERENCE}
    rows = protocol_rows(cells)
    records = [table.cell_record(row, label, row, cell, refs.get(row)) for row, label, cell in rows]
    data = table.data_frame(records)
    display = table.cell_display({"method": [r["label"] for r in records]}, records,
                                 [refs.get(r) for r, *_ in rows],
                                 paper="paper top-1 (%; linear evaluation, ImageNet val)")
    found = table.estimates(data)
    trained, floor = found.get("byol"), found.get("random_init")
    what = "BYOL far above the random-init encoder under the linear evaluation"
    difference = above(trained, floor, inputs.noise) if trained and floor else None
    return table.make("table_1", "Table 1: linear evaluation",
                      f"{describe(PAPER_LINEAR)} Paper values: {table.sources(data)}.",
                      display, data, [check(difference, what)])


TABLES = (build,)
