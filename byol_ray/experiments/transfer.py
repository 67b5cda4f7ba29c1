"""Table 4a: transfer to VOC detection and segmentation [P Table 4a].

Each encoder fine-tuned for detection (AP50, COCO-style AP) and segmentation (mIoU) by the
dense protocols (`byol-ray eval detect|segment`). The paper's shape: BYOL above Supervised-IN
(+3.1 AP50, +1.9 mIoU) and SimCLR; ours also asks BYOL to beat the random-init encoder.
"""

import math
from typing import Any

import pandas as pd

from byol_ray.tables import table
from byol_ray.tables.reference import references
from byol_ray.tables.verdicts import Estimate, Noise, above, check

ENCODERS = (("byol", "BYOL"), ("simclr", "SimCLR"), ("moco", "MoCo"),
            ("supervised", "Supervised-IN"), ("random_init", "random-init"))
METRICS = (("detect", "ap50", "AP50"), ("detect", "ap", "AP (COCO)"), ("segment", "miou", "mIoU"))
REFERENCE = references("table_4a")


def dense_cell(runs: pd.DataFrame, protocol: str, method: str, metric: str) -> dict[str, Any]:
    """One Table 4 cell: the metric's mean ± std over the finished runs of `protocol` on
    encoders of `method` (n = runs), with their status as `aggregate`'s cells have it."""
    mine = runs[runs["protocol"].eq(protocol) & runs["method"].eq(method)]
    finished = mine[mine["status"].eq("FINISHED")]
    values = finished[metric].dropna()
    failed = int(mine["status"].eq("FAILED").sum())
    pending = len(mine) - len(finished) - failed
    status = ("ok" if len(values) else "failed" if failed
              else "pending" if pending else "missing")
    splits = sorted(mine["split"].dropna().unique())
    return {"mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std()) if len(values) > 1 else math.nan,
            "n_seeds": len(values), "n_runs": len(mine), "n_failed": failed,
            "n_pending": pending, "n_no_metric": len(finished) - len(values),
            "n_collapsed": 0, "status": status, "failure_reasons": "",
            "protocol": f"{protocol} on VOC {'/'.join(splits)}" if splits else ""}


def build(runs: pd.DataFrame) -> table.Table:
    """Table 4a from the dense-protocol runs (`runs.load_eval_runs`): a row per encoder, our
    AP50, AP and mIoU beside the paper's, and a verdict on BYOL against the others."""
    refs = {(r.row, r.method): r for r in REFERENCE}
    records, display_rows = [], []
    for method, label in ENCODERS:
        shown, row_records = {"encoder": label}, []
        for protocol, metric, name in METRICS:
            cell = dense_cell(runs, protocol, method, metric)
            ref = refs.get((f"{protocol}_{metric}", method))
            row_records.append(table.cell_record(f"{protocol}_{metric}", name, method, cell, ref))
            shown[f"ours: {name}"] = row_records[-1]["cell"]
        records += row_records
        shown["protocol (ours)"] = table.row_protocol(row_records)
        for protocol, metric, name in METRICS:
            ref = refs.get((f"{protocol}_{metric}", method))
            if metric != "ap":  # the paper gives AP50 and mIoU only
                shown[f"paper: {name}"] = f"{ref.top1:.1f}" if ref else table.NOT_IN_PAPER
        display_rows.append(shown)
    data = table.data_frame(records)
    noise = Noise.of(data)
    found = {(r["row"], r["method"]): Estimate.of(r) for r in records}
    checks = []
    for row, name in (("detect_ap50", "AP50"), ("segment_miou", "mIoU")):
        byol = found[(row, "byol")]
        for other in ("random_init", "supervised", "simclr"):
            base = found[(row, other)]
            if other != "random_init" and base is None:
                continue  # asked only where such runs exist (not on the small presets)
            difference = above(byol, base, noise) if byol and base else None
            checks.append(check(difference, f"BYOL above {other} in {name}"))
    return table.make(
        "table_4a", "Table 4a: transfer to VOC detection and segmentation",
        "Ours: Faster R-CNN + FPN (AP50, COCO-style AP) and FCN (mIoU) fine-tuned on the "
        "encoder of each pretraining run (or baseline), in % on the VOC split in the protocol "
        f"column; mean ± std over runs (n = runs). Paper: {table.sources(data)}.",
        pd.DataFrame(display_rows), data, checks, [f"{len(runs)} dense-protocol runs"])


def from_inputs(inputs: table.Inputs) -> table.Table | None:
    """Table 4a where the store holds runs of the dense protocols."""
    dense = inputs.eval_runs
    return build(dense) if dense is not None and len(dense) else None


TABLES = (from_inputs,)
