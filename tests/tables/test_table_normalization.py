"""The normalization grid (opt-in) and its table from synthetic runs: cells, paper values,
noise-aware verdicts."""

from __future__ import annotations

from synthetic_runs import PRESET, raw_frame, seeds, trial

from byol_ray.cli.sweep import GRID_ORDER
from byol_ray.experiments import OPT_IN, grids
from byol_ray.experiments.normalization import AXIS, ROWS, build
from byol_ray.report.runs import normalise_runs, select_runs
from byol_ray.tables.table import Inputs
from byol_ray.tables.verdicts import AGREES, DISAGREES, NO_RUNS, WITHIN_NOISE

GRID = "normalization"


def test_the_grid_holds_both_methods_on_every_network_and_is_opt_in():
    cells = grids()[GRID].cells("imagenet-300")
    assert [(c.method, c.value) for c in cells] == [
        (m, row) for m in ("byol", "simclr") for row in ROWS]
    no_bn = next(c for c in cells if c.value == "no_bn")
    assert no_bn.overrides == ("model.encoder_norm=none", "model.projector_norm=none",
                               "model.predictor_norm=none")
    gn = next(c for c in cells if c.value == "gn_ws")
    assert "model.encoder_norm=group_ws" in gn.overrides
    assert GRID in GRID_ORDER and GRID in OPT_IN


def _inputs(byol_none: float, simclr_none: float, gn: float, collapsed: bool = True) -> Inputs:
    s = seeds
    trials = [*s(GRID, "byol", AXIS, "bn", 90.0), *s(GRID, "simclr", AXIS, "bn", 86.0),
              *s(GRID, "byol", AXIS, "no_bn", byol_none, collapsed=collapsed),
              *s(GRID, "simclr", AXIS, "no_bn", simclr_none),
              *s(GRID, "byol", AXIS, "gn_ws", gn),
              trial(GRID, "byol", AXIS, "encoder_bn_only", 0, None, "FAILED", reason="boom"),
              trial(GRID, "random_init", "random_init", "random_init", 0, 50.0)]
    return Inputs.of(select_runs(normalise_runs(raw_frame(trials)), preset=PRESET))


def test_the_table_shows_both_methods_beside_the_verified_paper_values():
    t = build(_inputs(byol_none=20.0, simclr_none=84.0, gn=89.0))
    shown = t.display.set_index("normalisation")
    bn, gn = ROWS["bn"].label, ROWS["gn_ws"].label
    assert shown.loc[bn, "BYOL ours (%)"] == "90.0 ± 0.4 (n=2)"
    assert shown.loc[bn, "BYOL paper (%)"] == "74.3" and shown.loc[gn, "BYOL paper (%)"] == "73.9"
    assert shown.loc[ROWS["no_bn"].label, "BYOL ours (%)"].endswith("[collapsed]")
    assert shown.loc[ROWS["no_bn"].label, "BYOL paper (%)"] == "not in paper"  # unverified
    assert shown.loc[ROWS["affine_init"].label, "SimCLR ours (%)"] == "missing"
    assert "2010.10241" in t.caption and any("boom" in n for n in t.notes)
    assert t.verdict.startswith("Verdict: agrees with the paper"), t.verdict


def test_the_verdicts_disagree_when_simclr_collapses_and_gn_falls_far_behind():
    t = build(_inputs(byol_none=20.0, simclr_none=52.0, gn=70.0))
    assert "✗ SimCLR with no normalisation neither collapses" in t.verdict
    assert "✗ BYOL with GN + WS within 3 points" in t.verdict
    assert "✓ BYOL with no normalisation collapses" in t.verdict


def test_no_table_without_runs_of_the_grid(runs):
    assert build(Inputs.of(runs)) is None


def test_single_seeds_decide_nothing_and_missing_cells_say_so():
    trials = [trial(GRID, "byol", AXIS, "bn", 0, 90.0),
              trial(GRID, "byol", AXIS, "no_bn", 0, 60.0)]
    t = build(Inputs.of(select_runs(normalise_runs(raw_frame(trials)), preset=PRESET)))
    outcomes = [line.split()[0] for line in t.verdict.split("; ")]
    assert WITHIN_NOISE in t.verdict and NO_RUNS in t.verdict
    assert AGREES not in outcomes and DISAGREES not in outcomes
