"""Driver side of one pretraining run: the worker loop launched (`runtime/launch.py`) as a Ray
Train run, or as a plain process without Ray (`byol-ray train --no-ray`).

`run_pretraining` validates the config, connects to (or starts) Ray unless it runs without it,
opens the MLflow run, launches the loop and ends the run FINISHED or FAILED. Sweeps launch the
same loop through `launch_pretraining` from inside their Tune trials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from byol_ray.core.config import Config, ConfigError, to_dict, validate
from byol_ray.jobs.pretrain.worker import train_worker
from byol_ray.learn.data import check_dataset
from byol_ray.learn.methods.registry import check_method
from byol_ray.runtime.launch import Launched, launch
from byol_ray.runtime.lifecycle import tracked_run
from byol_ray.runtime.tracking import journal, logger, store

KEEP_CHECKPOINTS = 2


@dataclass
class RunResult:
    """What a finished run leaves: its MLflow id, last metrics and checkpoint folder."""

    run_id: str
    metrics: dict[str, float]
    checkpoint_path: str | None


def loop_config(cfg: Config, run_id: str, tracking_uri: str) -> dict[str, Any]:
    """What `train_worker` receives: the config, its MLflow run, the journal folder."""
    return {"cfg": to_dict(cfg), "run_id": run_id, "tracking_uri": tracking_uri,
            "journal": os.environ.get(journal.JOURNAL_ENV, "")}


def default_name(cfg: Config, run_id: str) -> str:
    """The checkpoint folder's name of a run that was given none."""
    return f"{cfg.preset}-{cfg.method.name}-{run_id[:8]}"


def launch_pretraining(cfg: Config, run_id: str, tracking_uri: str, *, form: str,
                       storage: str | None = None, name: str | None = None,
                       **ray_options: Any) -> Launched:
    """The worker loop of run `run_id` launched in `form` (`runtime.launch`). A run with the
    same `name` and `storage` as an earlier one resumes from its newest checkpoint."""
    if storage and form != "plain":
        from byol_ray.runtime.cluster import absolute_storage  # Ray's forms only

        storage = absolute_storage(storage)
    keep = {"keep": KEEP_CHECKPOINTS} if form == "train" else {}
    return launch(train_worker, loop_config(cfg, run_id, tracking_uri), cfg, form=form,
                  name=name or default_name(cfg, run_id), storage=storage,
                  **keep | ray_options)


def build_trainer(cfg: Config, run_id: str, tracking_uri: str, storage_path: str | None = None,
                  name: str | None = None, callbacks: list | None = None):
    """The Ray Train `TorchTrainer` of the Train form, unstarted (tests fit it themselves)."""
    from byol_ray.runtime.cluster import absolute_storage
    from byol_ray.runtime.ray_launch import train_trainer

    return train_trainer(train_worker, loop_config(cfg, run_id, tracking_uri), cfg,
                         name=name or default_name(cfg, run_id),
                         storage=absolute_storage(storage_path) if storage_path else None,
                         callbacks=callbacks, keep=KEEP_CHECKPOINTS)


def run_pretraining(
    cfg: Config,
    tracking_uri: str,
    storage_path: str | None = None,
    address: str | None = None,
    ray: bool = True,
) -> RunResult:
    """Validate, connect to Ray (unless `ray=False`: a plain process), and run one pretraining
    run tracked in MLflow at `tracking_uri` (resolved where the command started)."""
    preflight(cfg)
    store.check_tracking_store(tracking_uri)
    logger.sync_journals(tracking_uri=tracking_uri)  # what earlier runs could not deliver
    # workers log through the journal; the storage is checked from every node
    with tracked_run(cfg, tracking_uri, address, storage=storage_path or "", journal=True,
                     ray=ray) as run:
        launched = launch_pretraining(cfg, run.run_id, tracking_uri,
                                      form="train" if ray else "plain",
                                      storage=storage_path or None)
    return RunResult(run.run_id, launched.metrics, launched.checkpoint)


def preflight(cfg: Config) -> None:
    """Every check that needs no worker: config values, a method from outside the package,
    and the dataset's files."""
    validate(cfg)
    check_method(cfg)
    try:
        check_dataset(cfg.data)
    except (FileNotFoundError, ValueError) as error:  # messages start with "data.root: "
        field, _, message = str(error).partition(": ")
        raise ConfigError(field, message) from None
