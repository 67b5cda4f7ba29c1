"""A trial the collapse monitor ended early (issue 31) shows its stop in its cell and counts as
collapsed (what the verdicts read); a cell without a stopped trial reads as before."""

from synthetic_runs import PRESET, raw_frame, trial

from byol_ray.report.runs import normalise_runs, select_runs
from byol_ray.tables.cells import aggregate, find_cell, format_cell


def _stopped(seed: int, epoch: int | None) -> dict:
    run = trial("target_network", "byol", "target_network", "pred=yes,target=no,beta=0", seed,
                11.0 + seed, collapsed=True)
    if epoch is not None:
        run["metrics"]["train/collapse_stopped_epoch"] = float(epoch)
    return run


def _cell(runs: list[dict]) -> dict:
    frame = select_runs(normalise_runs(raw_frame(runs)), preset=PRESET)
    return find_cell(aggregate(frame, "linear"), "target_network",
                     "pred=yes,target=no,beta=0", "byol")


def test_a_stopped_trial_is_marked_in_its_cell_and_counts_as_collapsed():
    one = _cell([_stopped(0, 6)])
    assert one["n_collapsed"] == 1 and one["stopped_epochs"] == "6"
    assert format_cell(one) == "11.0 (n=1) [collapsed at epoch 6, stopped]"
    two = _cell([_stopped(0, 6), _stopped(1, 8)])
    assert two["n_collapsed"] == 2
    assert format_cell(two).endswith(" [collapsed at epochs 6, 8, stopped]")
    partly = _cell([_stopped(0, 6), _stopped(1, None) | {"metrics": {
        "eval/linear_top1": 50.0, "eval/collapsed": 0.0}}])
    assert format_cell(partly).endswith(" [collapsed in 1/2; at epoch 6, stopped]")
    ran_on = _cell([_stopped(0, None)])
    assert ran_on["stopped_epochs"] == "" and format_cell(ran_on).endswith("[collapsed]")
