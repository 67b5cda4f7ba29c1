"""Table 4a from dense-protocol runs: cells per encoder, the paper's values, the verdict."""

from __future__ import annotations

import math

import pandas as pd

from byol_ray.experiments.transfer import build as build_table_4
from byol_ray.report.runs import EVAL_COLUMNS, normalise_eval_runs


def _run(protocol, method, value, seed=0, status="FINISHED"):
    split, metric = ("test", "ap50") if protocol == "detect" else ("val", "miou")
    return {"run_id": f"{protocol}-{method}-{seed}", "experiment": "byol-ray", "status": status,
            "tags.protocol": protocol, "tags.method": method, "tags.preset": "cpu-mini",
            "params.train.seed": str(seed), "tags.pretrain_run_id": "p",
            f"metrics.eval_{protocol}/{split}_{metric}": value}


def test_normalise_reads_the_headline_metric_of_any_split():
    raw = pd.DataFrame([_run("detect", "byol", 40.0), _run("segment", "random_init", 50.0),
                        {"run_id": "x", "tags.protocol": "linear"}])
    runs = normalise_eval_runs(raw)
    assert list(runs.columns) == list(EVAL_COLUMNS) and len(runs) == 2
    assert runs.loc[0, "ap50"] == 40.0 and runs.loc[0, "split"] == "test"
    assert runs.loc[1, "miou"] == 50.0 and math.isnan(runs.loc[1, "ap50"])


def test_table_4_puts_ours_beside_the_paper_with_a_verdict():
    raw = pd.DataFrame([_run("detect", "byol", v, s) for s, v in enumerate((60.0, 62.0, 61.0))]
                       + [_run("detect", "random_init", v, s)
                          for s, v in enumerate((30.0, 31.0, 29.0))]
                       + [_run("segment", "byol", 70.0), _run("segment", "random_init", 0.0,
                                                               status="FAILED")])
    table = build_table_4(normalise_eval_runs(raw))
    shown = table.display.set_index("encoder")
    assert shown.loc["BYOL", "ours: AP50"].startswith("61.0 ± 1.0")
    assert shown.loc["BYOL", "paper: AP50"] == "77.5" and shown.loc["BYOL", "paper: mIoU"] == "76.3"
    assert shown.loc["Supervised-IN", "paper: AP50"] == "74.4"
    assert shown.loc["random-init", "paper: mIoU"] == "not in paper"
    assert shown.loc["MoCo", "ours: mIoU"] == "missing"
    assert "failed" in shown.loc["random-init", "ours: mIoU"]
    assert "✓ BYOL above random_init in AP50" in table.verdict
    assert "? BYOL above random_init in mIoU" in table.verdict
    assert "Table 4a" in table.caption
