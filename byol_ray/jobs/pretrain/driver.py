"""Driver side of one pretraining run: a Ray Train `TorchTrainer` around the worker loop.

`run_pretraining` validates the config, connects to (or starts) Ray, opens the MLflow run,
fits the trainer and ends the run FINISHED or FAILED. Sweeps reuse `build_trainer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray.train
from ray.train.torch import TorchTrainer

from byol_ray.core.config import Config, ConfigError, to_dict, validate
from byol_ray.jobs.pretrain.worker import train_worker
from byol_ray.learn.data import check_dataset
from byol_ray.learn.methods.registry import check_method
from byol_ray.runtime.cluster import absolute_storage
from byol_ray.runtime.lifecycle import tracked_run
from byol_ray.runtime.tracking import journal, logger, store
from byol_ray.runtime.trainer import torch_trainer


@dataclass
class RunResult:
    """What a finished run leaves: its MLflow id, last metrics and checkpoint folder."""

    run_id: str
    metrics: dict[str, float]
    checkpoint_path: str | None


def build_trainer(
    cfg: Config,
    run_id: str,
    tracking_uri: str,
    storage_path: str | None = None,
    name: str | None = None,
    callbacks: list | None = None,
) -> TorchTrainer:
    """A TorchTrainer that runs `train_worker` on `scaling.num_workers` workers.

    A run with the same `name` and `storage_path` as an earlier one resumes from its last
    checkpoint (Ray Train V2 restores its checkpoint manager from storage).
    """
    return torch_trainer(
        train_worker,
        {"cfg": to_dict(cfg), "run_id": run_id, "tracking_uri": tracking_uri,
         "journal": os.environ.get(journal.JOURNAL_ENV, "")},
        cfg,
        name=name or f"{cfg.preset}-{cfg.method.name}-{run_id[:8]}",
        storage_path=absolute_storage(storage_path) if storage_path else None,
        callbacks=callbacks,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
    )


def run_pretraining(
    cfg: Config,
    tracking_uri: str = "",
    storage_path: str | None = None,
    address: str | None = None,
) -> RunResult:
    """Validate, connect to Ray, and run one pretraining run tracked in MLflow."""
    preflight(cfg)
    uri = store.resolve_tracking_uri(tracking_uri or cfg.tracking.tracking_uri)
    store.check_tracking_store(uri)
    logger.sync_journals(tracking_uri=uri)  # what earlier runs could not deliver
    os.environ[store.TRACKING_URI_ENV] = uri
    # workers log through the journal; the storage is checked from every node
    with tracked_run(cfg, uri, address, storage=storage_path or "", journal=True) as run:
        result = build_trainer(cfg, run.run_id, uri, storage_path).fit()
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return RunResult(run.run_id, dict(result.metrics or {}), checkpoint)


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
