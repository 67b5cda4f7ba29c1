"""A method from outside the package (`package.module:Class`) reaches the tables: its cells sit
beside BYOL's and SimCLR's, labelled by its class name, in the tables and figures comparing
methods; the verdicts stay the paper's (BYOL against SimCLR) and BYOL/SimCLR keep their
columns. Synthetic runs: no method is built, nothing is imported from outside."""

from synthetic_runs import PRESET, TRIALS, raw_frame, seeds

from byol_ray.core.methods import compared_methods, label, method_info
from byol_ray.report import build_tables
from byol_ray.report.render import plot_fig_3a, plot_fig_3b
from byol_ray.report.runs import normalise_runs, select_runs

OWN = "mymethods.align:Align"


def _tables():
    own = [*seeds("batch_size", OWN, "batch_size", "256", 70.0),
           *seeds("batch_size", OWN, "batch_size", "64", 60.0),
           *seeds("augmentations", OWN, "recipe", "baseline", 72.0),
           *seeds("augmentations", OWN, "recipe", "crop_only", 52.0)]
    runs = select_runs(normalise_runs(raw_frame([*TRIALS, *own])), preset=PRESET)
    return build_tables(runs, "linear")


def test_an_outside_method_has_facts_without_an_entry():
    info = method_info(OWN)
    assert (info.label, info.trains, info.compared) == ("Align", True, True)
    assert compared_methods([OWN, "byol", "random_init"]) == ("byol", "simclr", OWN)
    assert label("supervised") == "supervised"  # a tag that names no method stays as it is


def test_an_outside_method_s_cells_appear_in_the_tables_comparing_methods():
    tables = _tables()
    fig_3a = tables["fig_3a"]
    rows = fig_3a.display.set_index("batch size")
    assert rows.at["256", "Align ours (%)"] == "70.0 ± 0.4 (n=2)"
    assert rows.at["64", "Align drop (ours)"] == "10.0"
    assert rows.at["256", "BYOL ours (%)"] == "91.0 ± 0.4 (n=2)"  # ours keep their columns
    assert "Align paper top-1 (%; linear probe, offline, ImageNet val)" not in fig_3a.display
    own = fig_3a.data[fig_3a.data["method"].eq(OWN)].set_index("row")
    assert own.at["256", "mean"] == 70.0 and own.at["256", "drop_from"] == "256"
    assert "Align" not in fig_3a.verdict  # the verdicts check the paper's claims only
    baseline = tables["fig_3b"].display.set_index("augmentations")
    assert baseline.at["Baseline", "Align ours (%)"] == "72.0 ± 0.4 (n=2)"
    assert baseline.at["Crop only", "Align drop (ours)"] == "20.0"
    assert "Align ours (%)" not in tables["table_5a"].display  # a BYOL-only table


def test_the_figures_draw_an_outside_method_in_a_colour_of_its_own():
    tables = _tables()
    legend = [t.get_text() for t in plot_fig_3a(tables["fig_3a"]).axes[0].get_legend().texts]
    assert "Align (ours)" in legend and "BYOL (ours)" in legend
    bars = plot_fig_3b(tables["fig_3b"], tables.get("fig_3b_strength")).axes[0]
    assert "Align (ours)" in [t.get_text() for t in bars.get_legend().texts]
