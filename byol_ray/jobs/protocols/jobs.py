"""Driver side of the protocols: one classifier fit is one launched loop (`runtime/launch.py`);
a learning-rate grid is a small Ray Tune grid of such fits (or, inside a sweep trial, the same
fits one by one). A one-worker fit inside a Tune trial (a grid's rate, a sweep trial's
protocol) runs in the trial's own process; others are Ray Train runs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from ray import tune

from byol_ray.core.config import Config
from byol_ray.jobs.protocols.fit import launch_fit, plain_values
from byol_ray.jobs.protocols.loop import classifier_worker
from byol_ray.runtime.cluster import cluster_capacity, use_gpu
from byol_ray.runtime.launch import form_for
from byol_ray.runtime.ray_launch import trial_resources

TRIAL_DRIVER_MEMORY = 128 * 2**20  # bytes Ray reserves for each Tune trial's driver


@dataclass
class Job:
    """One classifier fit: what `classifier_worker` receives (as a dict)."""

    cfg: Config
    encoder_state: Any  # the encoder's state_dict (CPU tensors), or a ray.put ref of it
    mode: str  # linear | finetune
    fit_indices: list[int]  # images of the train split to fit on
    score_split: str  # train | test: where the scored images come from
    score_indices: list[int] | None  # None: the whole split
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """Plain values for Ray (the config as a dict)."""
        return plain_values(self)


def fit(job: Job, name: str, storage: str, in_trial: bool = False) -> dict[str, float]:
    """Fine-tune at one learning rate (`classifier_worker`); its reported metrics."""
    return launch_fit(classifier_worker, job, name, storage, in_trial)


def lr_grid(job: Job, lrs: tuple[float, ...], name: str, storage: str,
            with_tune: bool) -> dict[float, dict[str, float]]:
    """The job's metrics at each learning rate: a Ray Tune grid (`with_tune`), else one job
    after another (inside a Tune trial, where a second Tuner does not belong)."""
    if not with_tune:
        return {lr: fit(dataclasses.replace(job, lr=lr), f"{name}-lr{lr:g}", storage,
                        in_trial=True) for lr in lrs}
    s = job.cfg.scaling
    fits = int(cluster_capacity().get("CPU", 0) // max(s.num_workers * s.cpus_per_worker, 1e-9))
    # A one-worker fit runs in the trial's process, which then holds the worker's resources.
    resources = (trial_resources(job.cfg, use_gpu(job.cfg))
                 if form_for(job.cfg, in_trial=True) == "trial" else {"CPU": 0})
    tuner = tune.Tuner(
        tune.with_resources(_lr_trial, resources | {"memory": TRIAL_DRIVER_MEMORY}),
        param_space={"lr": tune.grid_search(list(lrs)), "job": job, "name": name,
                     "storage": storage},
        tune_config=tune.TuneConfig(max_concurrent_trials=max(1, min(fits, len(lrs)))),
        run_config=tune.RunConfig(name=f"{name}-grid-{int(time.time())}", storage_path=storage,
                                  verbose=0),
    )
    results = tuner.fit()
    out = {}
    for result in results:
        if result.error:
            raise result.error
        out[result.config["lr"]] = {k: v for k, v in result.metrics.items()
                                    if isinstance(v, int | float)}
    return out


def _lr_trial(config: dict[str, Any]) -> None:
    """Tune trainable: the job at one learning rate, its metrics reported to Tune by this
    function once the job has ended. (Through Train's TuneReportCallback the one report could
    reach Tune after the function returned: the trial then ended without its metrics.)"""
    job = dataclasses.replace(config["job"], lr=config["lr"])
    tune.report(fit(job, f"{config['name']}-lr{config['lr']:g}", config["storage"],
                    in_trial=True))
