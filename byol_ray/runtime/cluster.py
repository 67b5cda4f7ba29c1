"""The Ray cluster, in one place: joining it, what it can host, where its runs keep files, and
a driver whose cluster is gone (`exit_if_cluster_lost`); the cause in a Ray error's text is
`ray_errors.py`'s.

When a cluster's processes die (`ray stop --force`, its head machine lost), a driver joined
to it waits Ray's 60 s for the GCS and is then ended from Ray's C++ side with a log line of
Ray's. Instead, a thread watches the GCS port: unreachable for `LOST_AFTER_S` in a row, it
prints one line saying what happened and what to do, then ends the process with status 1. A
GCS back within that time (GCS fault tolerance) is not lost.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import ray

from byol_ray.core.config import Config, ConfigError
from byol_ray.runtime import console

# A cluster of our own on one machine: no spot preemption to watch, no Prometheus metrics of
# Train's controller and workers to export, and short runs want the controller to notice a
# report or the end of a run sooner than its 2 s default (0.1 s: a run's end is noticed ~1 s
# sooner than at 0.5 s, measured; docs/results/demo-timing.md).
LOCAL_CLUSTER_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}
LOST_AFTER_S = 15.0  # well inside Ray's own 60 s wait (gcs_rpc_server_reconnect_timeout_s)
CHECK_EVERY_S = 1.0


def connect(address: str | None = None) -> None:
    """Join the cluster at `address`, else the one `$RAY_ADDRESS` names or a `ray start` on this
    machine recorded (`ray up`, `ray submit`), else start a local cluster. Never Ray's legacy
    `auto` fallback, which joins any cluster it finds among the machine's processes: on a
    shared machine that is someone else's."""
    if ray.is_initialized():
        return
    console.before_ray_init(local=not (address or _recorded_cluster()))
    _use_local_auth_token()
    context, started_here = _init(address)
    console.after_ray_init(context, started_here)


def _init(address: str | None) -> tuple[object, bool]:
    """`ray.init`'s context, and whether it started a cluster here."""
    if address:
        return ray.init(address=address), False
    recorded = _recorded_cluster()
    if recorded:
        try:
            return ray.init(address=recorded), False
        except ConnectionError:  # a stale record of a cluster that has stopped
            console.before_ray_init(local=True)
    return ray.init(runtime_env={"env_vars": LOCAL_CLUSTER_ENV}), True


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


def absolute_storage(path: str) -> str:
    """Local folders made absolute (workers run elsewhere); s3://, gs://, ... kept as given."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def gcs_reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts connections at the GCS address (host:port)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextmanager
def exit_if_cluster_lost(what_next: str, label: str = "byol-ray") -> Iterator[None]:
    """While inside, end the process (status 1) with `[label] error: lost the Ray cluster
    ...: what_next` once the connected cluster's GCS stays unreachable for LOST_AFTER_S."""
    address = ray.get_runtime_context().gcs_address
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(address, what_next, label, done),
                               name="byol-ray-cluster-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _watch(address: str, what_next: str, label: str, done: threading.Event) -> None:
    lost_since = None
    while not done.wait(CHECK_EVERY_S):
        if gcs_reachable(address):
            lost_since = None
            continue
        lost_since = lost_since or time.monotonic()
        if time.monotonic() - lost_since >= LOST_AFTER_S and not done.is_set():
            _exit_with(f"[{label}] error: lost the Ray cluster (its GCS at {address} has not "
                       f"answered for {LOST_AFTER_S:g} s): {what_next}")


def _exit_with(line: str) -> None:
    """Print `line` as the process's last words and exit 1 at once: the console is closed
    to everything else first (Ray's threads log on), then the line goes to the saved stderr."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    stderr = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.write(stderr, f"{line}\n".encode())
    os._exit(1)
