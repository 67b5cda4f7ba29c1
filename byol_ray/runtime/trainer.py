"""The one place a Ray Train `TorchTrainer` is made: the launch's Train form
(`runtime/ray_launch.py`) for pretraining, protocols and dense jobs.

Every job runs `scaling.num_workers` workers with `scaling.cpus_per_worker` CPUs each (and
one GPU where the cluster has them), retried `scaling.max_failures` times from its last
checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray.train
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import (
    PlacementGroupCleanerCallback,
)

from byol_ray.core.config import Config
from byol_ray.runtime.cluster import use_gpu


class TrainerWithoutPlacementGroupCleaner(TorchTrainer):
    """Ray's `TorchTrainer` without the detached `PlacementGroupCleaner` actor it adds.

    Ray 2.60's cleaner asks the state API every second whether the Train controller is alive
    and takes a missing answer for death (`is_actor_alive`: `actor_state and ...`), then
    removes the placement group of a live run. On a loaded machine that killed healthy runs
    ("Destroying worker since its placement group was removed", a ControllerError; the same
    flaw is noted in the review of ray-project/ray#65447). Without it, the placement group of a
    controller that dies ungracefully lives until its driver exits (Ray removes a job's
    groups then; every run here is owned by one driver or Tune trial). One process fewer a run.
    """

    def _create_default_callbacks(self) -> list:
        return [callback for callback in super()._create_default_callbacks()
                if not isinstance(callback, PlacementGroupCleanerCallback)]


def torch_trainer(
    worker: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    cfg: Config,
    name: str,
    storage_path: str | None,
    callbacks: list | None = None,
    checkpoint_config: ray.train.CheckpointConfig | None = None,
) -> TorchTrainer:
    """A trainer running `worker(loop_config)` on the workers `cfg.scaling` asks for."""
    gpu = use_gpu(cfg)
    resources = {"CPU": cfg.scaling.cpus_per_worker} | ({"GPU": 1} if gpu else {})
    return TrainerWithoutPlacementGroupCleaner(
        worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers, use_gpu=gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=checkpoint_config,
            callbacks=callbacks,
        ),
    )
