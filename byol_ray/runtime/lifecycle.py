"""One tracked run from start to end: join the cluster, check it can host the workers, start
the MLflow run, and end it FINISHED, or FAILED with the root cause of whatever stopped it.
A run without Ray (`ray=False`) skips the cluster and imports no Ray."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from byol_ray.core.config import Config
from byol_ray.runtime.ray_errors import root_cause
from byol_ray.runtime.tracking.logger import finish_run
from byol_ray.runtime.tracking.run import Run


@contextmanager
def tracked_run(cfg: Config, uri: str, address: str | None = None, *,
                tags: dict[str, str] | None = None, parent_run_id: str | None = None,
                run_id: str | None = None, storage: str | None = None,
                journal: bool = False, ray: bool = True) -> Iterator[Run]:
    """The run of `cfg` in the store at `uri` (checked before Ray starts) while the body runs: on
    the cluster at `address`, with `tags`, nested under `parent_run_id`; or the run `run_id` a
    sweep made, marked RUNNING (a Tune trial); `storage` (Ray Train's, "" for its default) is
    checked from every node first. It ends FINISHED, or FAILED with its
    `failure_reason` when the body raises; `journal`: after what its workers buffered there;
    `ray=False`: no cluster to join (a plain process)."""
    if run_id:
        run = Run(uri, run_id)
        run.set_status("RUNNING")
    else:
        if ray:  # not a plain process
            _join_cluster(cfg, address, storage)
        run = Run.start(cfg, uri, tags=tags, parent_run_id=parent_run_id)
    end = (lambda reason=None: finish_run(uri, run.run_id, reason)) if journal else run.end
    try:
        yield run
    except BaseException as error:  # the run must not stay RUNNING
        end(root_cause(error))
        raise
    end()


def _join_cluster(cfg: Config, address: str | None, storage: str | None) -> None:
    """Connect to Ray, check it can host `cfg`'s workers and reach `storage` from every node."""
    import ray

    from byol_ray.runtime.cluster import check_resources, connect
    from byol_ray.runtime.storage import check_storage

    connect(address)
    check_resources(cfg)
    if storage is not None:
        check_storage(storage, ray.nodes())
