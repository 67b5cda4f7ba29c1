"""A sweep in MLflow: one parent run (tag role=sweep) per sweep, its trials' runs nested under
it; a trial repeating another grid's config gets that trial's results."""

from __future__ import annotations

from mlflow.entities import RunStatus

from byol_ray.core.masking import mask, mask_tree
from byol_ray.runtime.tracking.run import MAX_PARAM_LENGTH, Run, RunRecord, client_for
from byol_ray.runtime.tracking.store import experiment_id_for

# The MLflow UI draws a run in the colour of this tag; a sweep gives every seed of one cell the
# same colour, so a cell's spread reads as one group in the UI's charts.
RUN_COLOR_TAG = "mlflow.runColor"
CELL_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")  # Tableau 10


def cell_colour(index: int) -> str:
    """The UI colour of a grid's `index`-th cell (the palette repeats after ten cells)."""
    return CELL_COLOURS[index % len(CELL_COLOURS)]


def newest_sweep_run(tracking_uri: str, experiment: str, sweep: str) -> Run | None:
    """The newest parent run of the sweep named `sweep`, or None."""
    client = client_for(tracking_uri)
    found = client.search_runs(
        [experiment_id_for(client, experiment)],
        f"tags.role = 'sweep' AND tags.sweep = '{sweep}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return Run(tracking_uri, found[0].info.run_id, client) if found else None


def start_sweep_run(tracking_uri: str, experiment: str, name: str, tags: dict[str, str],
                    params: dict[str, str]) -> Run:
    """A RUNNING parent run for a sweep (tag role=sweep), its trials to be nested under it."""
    client = client_for(tracking_uri)
    created = client.create_run(experiment_id_for(client, experiment), run_name=name,
                                tags={"role": "sweep", "sweep": name,
                                      **{k: mask(v) for k, v in tags.items()}})
    for key, value in params.items():
        client.log_param(created.info.run_id, key, mask_tree(value, key)[:MAX_PARAM_LENGTH])
    return Run(tracking_uri, created.info.run_id, client)


def child_runs(parent: Run, experiment: str) -> dict[str, RunRecord]:
    """The runs nested under a sweep's parent, by their `trial` tag."""
    runs = parent.client.search_runs([experiment_id_for(parent.client, experiment)],
                                     f"tags.mlflow.parentRunId = '{parent.run_id}'",
                                     max_results=10000)
    return {run.data.tags.get("trial", ""): RunRecord.of(run) for run in runs}


def end_sweep_run(parent: Run, failed_trials: int) -> None:
    """A sweep ends FINISHED once every trial ran; the failed ones are counted in a tag."""
    parent.client.set_tag(parent.run_id, "failed_trials", str(failed_trials))
    parent.client.set_terminated(parent.run_id, RunStatus.to_string(RunStatus.FINISHED))


def share_results(source: Run, target_run_id: str) -> None:
    """End `target` with `source`'s metric histories, status and failure reason, tagged
    `same_as` = source: a trial of another grid with the same config and seed, run once."""
    client, source_id = source.client, source.run_id
    ended = client.get_run(source_id)
    history = [m for key in ended.data.metrics for m in client.get_metric_history(source_id, key)]
    for start in range(0, len(history), 1000):  # MLflow's batch limit
        client.log_batch(target_run_id, metrics=history[start:start + 1000])
    client.set_tag(target_run_id, "same_as", source_id)
    if "failure_reason" in ended.data.tags:
        client.set_tag(target_run_id, "failure_reason", ended.data.tags["failure_reason"])
    client.set_terminated(target_run_id, ended.info.status)
