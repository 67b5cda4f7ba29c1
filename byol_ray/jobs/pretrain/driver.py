"""Driver side of one pretraining run: a Ray Train `TorchTrainer` around the worker loop.

`run_pretraining` validates the config, connects to (or starts) Ray, opens the MLflow run,
fits the trainer and ends the run FINISHED or FAILED. Sweeps reuse `build_trainer`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
from ray.train.torch import TorchTrainer

from byol_ray.core.config import Config, ConfigError, to_dict, validate
from byol_ray.jobs.pretrain.worker import train_worker
from byol_ray.learn.data import check_dataset
from byol_ray.runtime import tracking
from byol_ray.runtime.journal import JOURNAL_ENV
from byol_ray.runtime.storage import check_storage
from byol_ray.runtime.trainer import torch_trainer


@dataclass
class RunResult:
    """What a finished run leaves: its MLflow id, last metrics and checkpoint folder."""

    run_id: str
    metrics: dict[str, float]
    checkpoint_path: str | None


# A cluster of our own on one machine: no spot preemption to watch, no Prometheus metrics of
# Train's controller and workers to export, and short runs want the controller to notice a
# report or the end of a run sooner than its 2 s default (0.1 s: a run's end is noticed ~1 s
# sooner than at 0.5 s, measured; README "Performance notes").
LOCAL_CLUSTER_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}


def connect(address: str | None = None) -> None:
    """Join the cluster at `address`, else the one `$RAY_ADDRESS` names or a `ray start` on this
    machine recorded (`ray up`, `ray submit`), else start a local cluster. Never Ray's legacy
    `auto` fallback, which joins any cluster it finds among the machine's processes: on a
    shared machine that is someone else's."""
    if ray.is_initialized():
        return
    _use_local_auth_token()
    if address:
        ray.init(address=address)
        return
    recorded = _recorded_cluster()
    if recorded:
        try:
            ray.init(address=recorded)
            return
        except ConnectionError:  # a stale record of a cluster that has stopped
            pass
    ray.init(runtime_env={"env_vars": LOCAL_CLUSTER_ENV})


def _use_local_auth_token() -> None:
    """Send the token in ~/.ray/auth_token if there is one, as `ray start` does: it turns
    token authentication on when that file exists (the first local `ray.init()` writes it),
    while `ray.init(address=...)` does not, and the cluster would refuse the driver
    (InvalidAuthToken). A cluster without authentication accepts the token too. An explicit
    $RAY_AUTH_MODE is left as it is."""
    try:  # Ray's own switch for this (what ray.init() uses when it finds a cluster itself)
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _recorded_cluster() -> str | None:
    """$RAY_ADDRESS, else the address the last `ray start` here wrote to Ray's temp dir."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:  # Ray's own reader of that file (what ray.init() consults); internal, so guarded
        from ray._private.utils import read_ray_address

        return read_ray_address()
    except Exception:
        return None


def cluster_capacity() -> dict[str, float]:
    """The most of each resource the cluster can have: with an autoscaler, what its node types
    add up to at their max counts (GPU workers may not be up yet); else what it has now."""
    now = ray.cluster_resources()
    try:  # the same source Ray Train checks before it waits for a placement group
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # an internal API: fall back to the current resources
        most = {}
    return {k: max(now.get(k, 0), most.get(k, 0)) for k in set(now) | set(most)}


def use_gpu(cfg: Config) -> bool:
    """Resolve scaling.use_gpu ("auto" = the cluster has GPUs); an unmet "true" is an error."""
    has_gpus = cluster_capacity().get("GPU", 0) > 0
    if cfg.scaling.use_gpu == "auto":
        return has_gpus
    wanted = cfg.scaling.use_gpu == "true"
    if wanted and not has_gpus:
        raise ConfigError("scaling.use_gpu", "true, but the Ray cluster has no GPUs; use auto")
    return wanted


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
         "journal": os.environ.get(JOURNAL_ENV, "")},
        cfg,
        name=name or f"{cfg.preset}-{cfg.method.name}-{run_id[:8]}",
        storage_path=absolute_storage(storage_path) if storage_path else None,
        callbacks=callbacks,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
    )


def absolute_storage(path: str) -> str:
    """Local folders made absolute (workers run elsewhere); s3://, gs://, ... kept as given."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def run_pretraining(
    cfg: Config,
    tracking_uri: str = "",
    storage_path: str | None = None,
    address: str | None = None,
) -> RunResult:
    """Validate, connect to Ray, and run one pretraining run tracked in MLflow."""
    preflight(cfg)
    uri = tracking.resolve_tracking_uri(tracking_uri or cfg.tracking.tracking_uri)
    tracking.check_tracking_store(uri)
    tracking.sync_journals(tracking_uri=uri)  # what earlier runs could not deliver
    os.environ[tracking.TRACKING_URI_ENV] = uri
    connect(address)
    check_resources(cfg)
    check_storage(storage_path or "", ray.nodes())
    run_id = tracking.start_run(cfg, uri)
    try:
        result = build_trainer(cfg, run_id, uri, storage_path).fit()
    except BaseException as error:  # KeyboardInterrupt too: the run must not stay RUNNING
        tracking.finish_run(uri, run_id, root_cause(error))
        raise
    tracking.finish_run(uri, run_id)
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return RunResult(run_id, dict(result.metrics or {}), checkpoint)


def preflight(cfg: Config) -> None:
    """Every check that needs no worker: config values and the dataset's files."""
    validate(cfg)
    try:
        check_dataset(cfg.data)
    except (FileNotFoundError, ValueError) as error:  # messages start with "data.root: "
        field, _, message = str(error).partition(": ")
        raise ConfigError(field, message) from None


def check_resources(cfg: Config) -> None:
    """Fail fast when the cluster can never host the worker group (instead of hanging)."""
    total = cluster_capacity()
    need_cpus = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    if need_cpus > total.get("CPU", 0):
        raise ConfigError(
            "scaling.num_workers",
            f"{cfg.scaling.num_workers} workers x {cfg.scaling.cpus_per_worker:g} CPUs need "
            f"{need_cpus:g} CPUs; the Ray cluster can have at most {total.get('CPU', 0):g}",
        )
    if cfg.data.decoder == "gpu" and not use_gpu(cfg):
        raise ConfigError("data.decoder", "gpu decodes with nvJPEG on CUDA, but the Ray "
                          "cluster has no GPUs; use data.decoder=cpu")
    if use_gpu(cfg) and cfg.scaling.num_workers > total.get("GPU", 0):
        raise ConfigError(
            "scaling.num_workers",
            f"{cfg.scaling.num_workers} GPU workers need {cfg.scaling.num_workers} GPUs; "
            f"the Ray cluster can have at most {total.get('GPU', 0):g}",
        )


def root_cause(error: BaseException) -> str:
    """The most specific message in a Ray error chain, for the MLflow failure tag."""
    text = f"{type(error).__name__}: {error}"
    worker_errors = re.findall(r"(\w+(?:Error|Exception): [^\n]+)", text)
    return worker_errors[-1] if worker_errors else text
