"""Noise-aware verdicts on synthetic cells: ✓ and ✗ only beyond the seeds' noise, ≈ otherwise."""

import math
from dataclasses import replace

import pandas as pd
import pytest
from synthetic_runs import raw_frame, trial

from byol_ray.experiments.ema_decay import build as build_table_5a
from byol_ray.report.runs import normalise_runs
from byol_ray.tables.table import Inputs
from byol_ray.tables.verdicts import (
    AGREES,
    DISAGREES,
    NO_RUNS,
    WITHIN_NOISE,
    Check,
    Estimate,
    Noise,
    above,
    check,
    far_below,
    order_check,
    verdict_line,
)

NO_POOL = Noise()


def test_a_difference_beyond_two_standard_errors_agrees_or_disagrees():
    # SE of the difference = sqrt(1/3 + 1/3) = 0.82: 3 points is beyond 2 SE either way
    high, low = Estimate(80.0, 1.0, 3), Estimate(77.0, 1.0, 3)
    assert above(high, low, NO_POOL).se == pytest.approx(math.sqrt(2 / 3))
    assert above(high, low, NO_POOL).outcome == AGREES
    assert above(low, high, NO_POOL).outcome == DISAGREES


def test_a_difference_within_two_standard_errors_is_within_noise():
    a, b = Estimate(80.0, 2.0, 2), Estimate(78.0, 2.0, 2)  # +2.0, SE 2.0
    result = check(above(a, b, NO_POOL), "a above b")
    assert result.outcome == WITHIN_NOISE
    assert result.detail == "a above b (+2.0 ± 2.0 SE, within noise)"


def test_single_seed_against_single_seed_is_never_decided():
    a, b = Estimate(90.0), Estimate(10.0)  # 80 points apart, one seed each
    assert above(a, b, Noise(0.5, 4)).outcome == WITHIN_NOISE
    assert "single seeds" in check(above(a, b, NO_POOL), "a above b").detail


def test_a_single_seed_cell_borrows_the_pooled_noise_of_multi_seed_cells():
    seeded, single = Estimate(80.0, 1.0, 2), Estimate(70.0)
    assert math.isnan(above(seeded, single, NO_POOL).se)  # no pooled noise: unknown
    pooled = Noise(1.0, 3)
    assert above(seeded, single, pooled).se == pytest.approx(math.sqrt(0.5 + 1.0))
    assert above(seeded, single, pooled).outcome == AGREES
    assert above(Estimate(71.0, 1.0, 2), single, Noise(3.0, 3)).outcome == WITHIN_NOISE


def test_pooled_noise_uses_multi_seed_cells_that_did_not_collapse():
    cells = pd.DataFrame({
        "status": ["ok", "ok", "ok", "ok", "failed"],
        "n_seeds": [3, 2, 2, 1, 0],
        "std": [1.0, 2.0, 0.0, math.nan, math.nan],
        "n_collapsed": [0, 0, 2, 0, 0],
    })
    noise = Noise.of(cells)
    assert noise.cells == 2 and noise.std == pytest.approx(math.sqrt((2 * 1 + 1 * 4) / 3))
    assert Noise.of(cells.iloc[3:]).cells == 0 and "unknown" in Noise.of(cells.iloc[3:]).describe()


def test_far_below_is_measured_from_the_midpoint_above_the_floor():
    best, floor = Estimate(90.0, 1.0, 3), Estimate(50.0, 1.0, 3)
    assert far_below(Estimate(60.0, 1.0, 3), best, floor, NO_POOL).outcome == AGREES
    assert far_below(Estimate(85.0, 1.0, 3), best, floor, NO_POOL).outcome == DISAGREES
    assert far_below(Estimate(70.0, 1.0, 3), best, floor, NO_POOL).outcome == WITHIN_NOISE


def test_order_check_counts_pairs_by_their_noise():
    ours = {"a": Estimate(90.0, 0.5, 3), "b": Estimate(80.0, 0.5, 3), "c": Estimate(80.5, 0.5, 3)}
    paper = {"a": 3.0, "b": 2.0, "c": 1.0}
    result = order_check(ours, paper, "rows", NO_POOL)
    # a>b ✓, a>c ✓, b>c: ours 80 < 80.5 within noise (SE 0.41)
    assert result.outcome == AGREES and "2 ✓, 1 ≈ of 3" in result.detail
    swapped = order_check(ours, {"a": 1.0, "b": 2.0, "c": 3.0}, "rows", NO_POOL)
    assert swapped.outcome == DISAGREES


def test_verdict_line_words():
    yes, no = Check(AGREES, "x"), Check(DISAGREES, "y")
    noisy, gap = Check(WITHIN_NOISE, "z"), Check(NO_RUNS, "w")
    assert verdict_line([yes]).startswith("Verdict: agrees with the paper. ✓ x")
    assert verdict_line([yes, noisy]).startswith(
        "Verdict: agrees with the paper where the seeds can tell.")
    assert verdict_line([yes, no]).startswith("Verdict: partly agrees")
    assert verdict_line([no, noisy]).startswith("Verdict: disagrees with the paper where")
    assert verdict_line([noisy, gap]) == (
        "Verdict: within noise: no difference the shape rests on exceeds the seeds' noise. "
        "≈ z; ? w (no runs).")
    assert verdict_line([gap]).startswith("Verdict: not enough finished runs")


def test_table_5a_of_single_seeds_is_within_noise_not_a_tick():
    frame = raw_frame([trial("ema_decay", "byol", "tau_base", tau, 0, top1)
                       for tau, top1 in (("1", 60.0), ("0.99", 90.0), ("0", 20.0))])
    t = build_table_5a(replace(Inputs.of(normalise_runs(frame)), floor=Estimate(50.0)))
    assert t.verdict.startswith("Verdict: within noise")
    assert "✓" not in t.verdict and "✗" not in t.verdict
