"""Runs -> cells: seeds averaged, re-runs counted once, failures, gaps and collapse kept."""

import math

import pandas as pd
import pytest
from synthetic_runs import TRIALS, raw_frame, trial

from byol_ray.report.runs import TablesError, normalise_runs, select_runs
from byol_ray.tables.cells import aggregate, find_cell, format_cell


def _cell(cells, ablation, value, method="byol"):
    return find_cell(cells, ablation, value, method)


def test_seeds_are_averaged_with_std_and_count(runs):
    cells = aggregate(runs, "linear")
    tau = _cell(cells, "tau_base", "0.99")
    # seed 0 failed once and was re-run: it counts once, as finished, and no failure shows
    assert tau["n_seeds"] == 3 and tau["seeds"] == "0,1,2"
    assert tau["mean"] == pytest.approx(91.0) and tau["std"] == pytest.approx(1.0)
    assert tau["n_failed"] == 0 and tau["status"] == "ok"
    assert format_cell(tau) == "91.0 ± 1.0 (n=3)"


def test_failed_pending_and_collapsed_cells_say_so(runs):
    cells = aggregate(runs, "linear")
    partly = _cell(cells, "tau_base", "0.9")
    assert (partly["n_seeds"], partly["n_failed"]) == (1, 1)
    assert format_cell(partly) == "85.0 (n=1; 1 failed)"
    assert "FloatingPointError" in partly["failure_reasons"]
    failed = _cell(cells, "target_network", "pred=yes,target=yes,beta=1")
    assert failed["status"] == "failed" and math.isnan(failed["mean"])
    assert format_cell(failed) == "failed (1 of 1 trials)"
    running = _cell(cells, "tau_base", "0.999")
    assert running["status"] == "pending" and format_cell(running).startswith("not finished")
    collapsed = _cell(cells, "tau_base", "0")
    assert collapsed["n_collapsed"] == 2 and format_cell(collapsed).endswith("[collapsed]")
    assert format_cell(None) == "missing"


def test_axis_values_are_canonical_and_simclr_s_own_tag_stays_apart_from_table_5b_rows():
    frame = raw_frame([
        trial("ema_decay", "byol", "tau_base", "1.0", 0, 60.0),
        trial("ema_decay", "byol", "tau_base", "1", 1, 62.0),
        trial("target_network", "simclr", "target_network", "simclr", 0, 85.0),
        trial("target_network", "byol", "target_network", "pred=True,target=False,beta=1.0", 0,
              80.0),
    ])
    cells = aggregate(normalise_runs(frame), "linear")
    assert _cell(cells, "tau_base", "1")["n_seeds"] == 2
    # an older sweep's method=simclr cell keeps its tag: SimCLR's own settings are not the
    # (–, –, 1) row, which is SimCLR's loss under BYOL's settings
    assert _cell(cells, "target_network", "simclr", "simclr")["mean"] == 85.0
    assert not cells["ablation_value"].eq("pred=no,target=no,beta=1").any()
    assert _cell(cells, "target_network", "pred=yes,target=no,beta=1")["mean"] == 80.0


def test_protocol_names_probe_timing_and_split(runs):
    linear = _cell(aggregate(runs, "linear"), "batch_size", "256")
    knn = _cell(aggregate(runs, "knn"), "batch_size", "256")
    assert linear["protocol"] == "linear probe, offline, digits test split"
    assert knn["protocol"] == "kNN (k=20), online, digits test split"
    assert knn["mean"] == pytest.approx(90.0)  # eval/knn_top1, not the linear probe


def test_a_metric_never_logged_is_missing_not_zero():
    frame = raw_frame([trial("ema_decay", "byol", "tau_base", "0.99", 0, 90.0)])
    frame = frame.drop(columns=["metrics.eval/knn_top1"])
    cell = _cell(aggregate(normalise_runs(frame), "knn"), "tau_base", "0.99")
    assert cell["status"] == "missing" and math.isnan(cell["mean"])
    assert format_cell(cell) == "missing (1 without this metric)"


def test_random_init_without_eval_metrics_falls_back_to_its_baseline_metrics():
    frame = raw_frame([trial("ema_decay", "random_init", "random_init", "random_init", 0, None)])
    frame["metrics.baseline/linear_top1"] = 33.0
    cell = _cell(aggregate(normalise_runs(frame), "linear"), "random_init", "random_init",
                 "random_init")
    assert cell["mean"] == 33.0


def test_select_runs_needs_a_preset_when_several_are_stored():
    runs = normalise_runs(raw_frame(TRIALS))
    with pytest.raises(TablesError, match="several presets .*cifar10, cpu-mini"):
        select_runs(runs)
    assert set(select_runs(runs, preset="cifar10")["preset"]) == {"cifar10"}


def test_an_empty_store_gives_empty_cells():
    runs = normalise_runs(pd.DataFrame(columns=["run_id", "experiment_id", "status"]))
    assert list(aggregate(runs).columns)[:3] == ["ablation", "ablation_value", "method"]
    assert aggregate(runs).empty
