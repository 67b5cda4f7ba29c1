"""Reads across runs: finished evaluation runs, experiments, and runs as a DataFrame for the
paper's tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import mlflow
from mlflow.tracking import MlflowClient

from byol_ray.runtime.tracking.store import TRACKING_URI_ENV

if TYPE_CHECKING:  # pandas only where tables read runs
    import pandas as pd


def finished_eval_run(tracking_uri: str, experiment: str, pretrain_run_id: str,
                      protocol: str) -> str | None:
    """The id of a FINISHED evaluation run of `protocol` on that pretraining run, if any."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.role = 'eval' AND tags.protocol = '{protocol}' AND "
        f"tags.pretrain_run_id = '{pretrain_run_id}' AND attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def experiment_names(tracking_uri: str) -> dict[str, str]:
    """Experiment id -> name, for every experiment of the store."""
    return {e.experiment_id: e.name for e in MlflowClient(tracking_uri).search_experiments()}


def search_runs_frame(tracking_uri: str, experiments: Sequence[str] | None,
                      filter_string: str) -> pd.DataFrame:
    """`mlflow.search_runs` as a DataFrame (columns `tags.*`, `params.*`, `metrics.*`) over
    the named experiments (None: all). It reads MLflow's global tracking URI (and MLflow
    writes $MLFLOW_TRACKING_URI): both are set for the call and put back as they were."""
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    env = os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.search_runs(
            experiment_names=list(experiments) if experiments else None,
            search_all_experiments=not experiments, filter_string=filter_string,
            output_format="pandas",
        )
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = env
