"""MLflow run lifecycle: create (or re-attach to) a run, log metrics from a worker, end it.

The driver creates the run before any worker starts, so that a run that fails early still
ends FAILED with its reason; the world-rank-0 worker logs metrics to it by id; the driver
ends it. Nothing here knows how training works.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import yaml
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from byol_ray.core.config import Config, ConfigError, flatten, to_dict
from byol_ray.runtime.journal import Journal, drain, journal_dir, pending_records

if TYPE_CHECKING:  # pandas only where tables read runs
    import pandas as pd

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
TRACKING_URI_FIELD = "--tracking-uri"  # how errors name the tracking URI
# Schemes MLflow has a tracking store for (a database URI may name its driver: mysql+pymysql).
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql",
                    "databricks")
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value


def resolve_tracking_uri(uri: str = "") -> str:
    """An absolute tracking URI that Ray workers in other folders reach too.

    "" means $MLFLOW_TRACKING_URI, else MLflow's default (sqlite:///mlflow.db in the working
    folder); relative sqlite and file paths are made absolute. A URI with a scheme MLflow has
    no store for (`htp:/host`) raises ConfigError instead of becoming a folder of that name.
    """
    uri = uri or os.environ.get(TRACKING_URI_ENV, "") or mlflow.get_tracking_uri()
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", uri)
    if scheme and (scheme[1].split("+")[0].lower() not in TRACKING_SCHEMES
                   or not uri.startswith(scheme[0] + "//")):
        raise ConfigError(TRACKING_URI_FIELD, f"{uri!r} is not a tracking URI; use "
                          "http(s)://HOST:PORT, sqlite:///PATH.db or a folder")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    if "://" not in uri:  # a plain folder: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def check_tracking_store(uri: str, attempts: int = 2, timeout_s: float = 5.0) -> None:
    """Fail fast, before Ray starts, when runs could not be tracked at `uri` (resolved).

    A server must answer a real API call (searching experiments) within `attempts` tries of
    `timeout_s` each: a bounded check instead of MLflow's own retries, which last minutes.
    A sqlite store needs a folder it can be created in. Raises ConfigError naming the URI and
    what was tried.
    """
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(TRACKING_URI_FIELD, f"{uri}: cannot create the database in "
                              f"{folder} ({existing} is not a writable folder)")
        return
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    request = urllib.request.Request(url, data=b'{"max_results": 1}', method="POST",
                                     headers={"Content-Type": "application/json",
                                              **_auth_headers()})
    problem = ""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                return
        except urllib.error.HTTPError as error:
            body = error.read(300).decode(errors="replace").strip()
            problem = f"HTTP {error.code} {error.reason}: {body}"
            if error.code < 500:  # a server answered and refused: asking again changes nothing
                raise ConfigError(TRACKING_URI_FIELD, f"the MLflow server at {uri} refused "
                                  f"POST {url}: {problem}{_refusal_hint(error.code, body)}"
                                  ) from None
        except (urllib.error.URLError, OSError) as error:
            problem = str(getattr(error, "reason", error))
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise ConfigError(TRACKING_URI_FIELD, f"no MLflow server answered at {uri} (POST {url}, "
                      f"{attempts} tries, {timeout_s:g} s each): {problem}; start the server "
                      "or point --tracking-uri elsewhere")


def _refusal_hint(code: int, body: str) -> str:
    """What to change for the refusals users meet: MLflow's DNS-rebinding guard, auth."""
    if code == 403 and "Host header" in body:
        return ("; the server's --allowed-hosts must list the host and port of this URI "
                "(cluster/README.md)")
    if code in (401, 403):
        return "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    return ""


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's own client would send (basic auth or a bearer token)."""
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
                .decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def start_run(
    cfg: Config,
    tracking_uri: str,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    describe: bool = True,
) -> str:
    """Create a RUNNING MLflow run holding the config as params, tags and an artifact
    (`describe=False`: tags only; the caller calls `describe_run`)."""
    client = MlflowClient(tracking_uri)
    experiment_id = experiment_id_for(client, cfg.tracking.experiment)
    all_tags = {"method": cfg.method.name, "preset": cfg.preset, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=cfg.tracking.run_name or None, tags=all_tags)
    if describe:
        describe_run(tracking_uri, run.info.run_id, cfg)
    return run.info.run_id


def describe_run(tracking_uri: str, run_id: str, cfg: Config) -> None:
    """Log the config as `config.yaml`, then as params. A run that holds all of them is
    described (`is_described`); the calls can be repeated (the same param value again is
    accepted), which a sweep resumed after its driver was killed mid-description relies on."""
    client = MlflowClient(tracking_uri)
    client.log_text(run_id, yaml.safe_dump(to_dict(cfg), sort_keys=False), "config.yaml")
    params = [  # last: a run holding every param is fully described
        mlflow.entities.Param(key, str(value)[:_MAX_PARAM_LENGTH])
        for key, value in flatten(cfg).items()
    ]
    for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=params[i : i + 100])


def is_described(run: RunRecord, cfg: Config) -> bool:
    """Whether `describe_run` completed for this run (every param of the config is there)."""
    return set(flatten(cfg)) <= set(run.params)


def experiment_id_for(client: MlflowClient, name: str) -> str:
    """The id of the named experiment, created on first use."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(client, name))
    except mlflow.exceptions.MlflowException:  # created concurrently by another process
        return client.get_experiment_by_name(name).experiment_id


def _artifact_location(client: MlflowClient, name: str) -> str | None:
    """Beside a sqlite store: its artifacts in `mlruns/` next to the database file, wherever
    the command runs (MLflow's default is `./mlruns` in the current folder). Servers and other
    stores keep their own default (None)."""
    uri = client.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri.removeprefix("sqlite:///")).parent
    return (folder / "mlruns" / re.sub(r"[^\w.-]", "_", name)).as_uri()


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log numeric metrics at one step (an epoch) in one request."""
    timestamp = int(time.time() * 1000)
    entries = [Metric(k, float(v), timestamp, step) for k, v in metrics.items()]
    MlflowClient(tracking_uri).log_batch(run_id, metrics=entries)


# Logged in the same request as each epoch's metrics: how far the run's metrics have reached.
EPOCH_METRIC = "epoch"


def last_logged_epoch(tracking_uri: str, run_id: str) -> int:
    """The last epoch `RunLogger` delivered to the run; -1 when none (a fresh run)."""
    metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    return int(metrics.get(EPOCH_METRIC, -1))  # MLflow keeps a metric's value at its max step


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each metric of the run (what the MLflow UI shows)."""
    return dict(MlflowClient(tracking_uri).get_run(run_id).data.metrics)


def _failure_reason(error: BaseException | str) -> str:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return reason[:5000]


def end_run(tracking_uri: str, run_id: str, error: BaseException | str | None = None) -> None:
    """Mark the run FINISHED, or FAILED with the reason in the `failure_reason` tag."""
    client = MlflowClient(tracking_uri)
    if error is None:
        if "failure_reason" in client.get_run(run_id).data.tags:  # an earlier try failed
            client.delete_tag(run_id, "failure_reason")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        return
    client.set_tag(run_id, "failure_reason", _failure_reason(error))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


def share_results(tracking_uri: str, source_run_id: str, target_run_id: str) -> None:
    """End `target` with `source`'s metric histories, status and failure reason, tagged
    `same_as` = source: a trial of another grid with the same config and seed, run once."""
    client = MlflowClient(tracking_uri)
    source = client.get_run(source_run_id)
    history = [m for key in source.data.metrics
               for m in client.get_metric_history(source_run_id, key)]
    for start in range(0, len(history), 1000):  # MLflow's batch limit
        client.log_batch(target_run_id, metrics=history[start:start + 1000])
    client.set_tag(target_run_id, "same_as", source_run_id)
    if "failure_reason" in source.data.tags:
        client.set_tag(target_run_id, "failure_reason", source.data.tags["failure_reason"])
    client.set_terminated(target_run_id, source.info.status)


# --------------------------------------------------------------------------- trained weights

WEIGHTS_ARTIFACT = "weights"  # the artifact folder of a run's trained networks


def log_weights(tracking_uri: str, run_id: str, folder: Path) -> None:
    """Upload a weights folder (`byol_ray.runtime.weights`) as the run's `weights/` artifacts."""
    MlflowClient(tracking_uri).log_artifacts(run_id, str(folder), WEIGHTS_ARTIFACT)


def register_weights(tracking_uri: str, run_id: str, name: str) -> str:
    """Register the run's weights in the MLflow Model Registry as a new version of `name`;
    returns the version (load it as `models:/NAME/VERSION`)."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="byol-ray trained encoder weights")
    version = client.create_model_version(
        name, source=f"runs:/{run_id}/{WEIGHTS_ARTIFACT}", run_id=run_id
    )
    return version.version


def download_weights(ref: str, tracking_uri: str, folder: Path) -> tuple[Path, str]:
    """The weights folder that `ref` names, downloaded into `folder`, and the id of the run
    that saved it. `ref` is a run id, `runs:/<id>[/weights[/FILE]]` or `models:/NAME/VERSION`.

    Raises LookupError with MLflow's reason when the run, model version or folder does not
    exist.
    """
    from mlflow.artifacts import download_artifacts

    try:
        if ref.startswith("models:/"):
            name, _, version = ref.removeprefix("models:/").partition("/")
            client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
            model_version = client.get_model_version(name, version)
            source, run_id = model_version.source, model_version.run_id
        else:
            run_id, _, path = ref.removeprefix("runs:/").partition("/")
            MlflowClient(tracking_uri).get_run(run_id)  # a clear "not found" first
            path = path.rstrip("/") or WEIGHTS_ARTIFACT
            if Path(path).suffix:  # a file inside the folder: take the folder
                path = str(Path(path).parent)
            source = f"runs:/{run_id}/{path}"
        local = download_artifacts(artifact_uri=source, dst_path=str(folder),
                                   tracking_uri=tracking_uri)
    except mlflow.exceptions.MlflowException as error:
        raise LookupError(error.message) from None
    return Path(local), run_id


# --------------------------------------------------------------------------- evaluation runs


def log_json(tracking_uri: str, run_id: str, name: str, data: object) -> None:
    """Save `data` as the JSON artifact `name` of the run (e.g. a protocol's image indices)."""
    import json

    MlflowClient(tracking_uri).log_text(run_id, json.dumps(data), name)


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


# --------------------------------------------------------------------------- sweeps, read-back


@dataclass(frozen=True)
class RunRecord:
    """What the console shows of a run: its id, status, metrics (last value), params, tags."""

    run_id: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def read_run(tracking_uri: str, run_id: str) -> RunRecord:
    """One run as it stands in MLflow."""
    return _record(MlflowClient(tracking_uri).get_run(run_id))


def _record(run: mlflow.entities.Run) -> RunRecord:
    return RunRecord(run.info.run_id, run.info.status, dict(run.data.metrics),
                     dict(run.data.params), dict(run.data.tags))


def set_status(tracking_uri: str, run_id: str, status: str) -> None:
    """Mark a run SCHEDULED or RUNNING (a trial queued, started, or a sweep resumed)."""
    MlflowClient(tracking_uri).update_run(run_id, status=status)


def newest_sweep_run(tracking_uri: str, experiment: str, sweep: str) -> str | None:
    """The id of the newest parent run of the sweep named `sweep`, or None."""
    client = MlflowClient(tracking_uri)
    found = client.search_runs(
        [experiment_id_for(client, experiment)],
        f"tags.role = 'sweep' AND tags.sweep = '{sweep}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return found[0].info.run_id if found else None


def start_sweep_run(tracking_uri: str, experiment: str, name: str, tags: dict[str, str],
                    params: dict[str, str]) -> str:
    """A RUNNING parent run for a sweep (tag role=sweep), its trials to be nested under it."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id_for(client, experiment), run_name=name,
                            tags={"role": "sweep", "sweep": name, **tags})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value[:_MAX_PARAM_LENGTH])
    return run.info.run_id


def child_runs(tracking_uri: str, experiment: str, parent_run_id: str) -> dict[str, RunRecord]:
    """The runs nested under a sweep's parent, by their `trial` tag."""
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([experiment_id_for(client, experiment)],
                              f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10000)
    return {run.data.tags.get("trial", ""): _record(run) for run in runs}


def end_sweep_run(tracking_uri: str, run_id: str, failed_trials: int) -> None:
    """A sweep ends FINISHED once every trial ran; the failed ones are counted in a tag."""
    client = MlflowClient(tracking_uri)
    client.set_tag(run_id, "failed_trials", str(failed_trials))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


# --------------------------------------------------------------------------- buffered logging

JOURNAL_WAIT_S = 120.0  # how long a finished run waits for an absent server before it leaves
#                         its last records in the journal for `byol-ray sync`


class RunLogger:
    """Writes to one run that never wait on the tracking server: buffered in order, in memory
    and in a local journal (`runtime.journal`), delivered by a background thread; each epoch
    reaches MLflow exactly once, also after a worker restart re-runs epochs it had logged."""

    def __init__(self, tracking_uri: str, run_id: str, journal: str = "", role: str = "worker"):
        self.uri, self.run_id = tracking_uri, run_id
        path = journal_dir(journal) / f"{run_id}.{role}.jsonl"
        self.journal = Journal(path, _Delivery(), label=f"MLflow at {tracking_uri}")

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """Buffer one epoch's metrics, logged at step `epoch`."""
        self.journal.append({"kind": "epoch", "uri": self.uri, "run_id": self.run_id,
                             "step": epoch, "time_ms": int(time.time() * 1000),
                             "metrics": {k: float(v) for k, v in metrics.items()}})

    def log_weights(self, folder: Path) -> None:
        """Buffer a weights folder (copied into the journal) for the run's `weights/`."""
        with self.journal.lock:
            copy = self.journal.path.with_suffix(f".weights-{self.journal.next_seq}")
            shutil.rmtree(copy, ignore_errors=True)  # left by a process killed mid-copy
            shutil.copytree(folder, copy)
            self.journal.append({"kind": "weights", "uri": self.uri, "run_id": self.run_id,
                                 "folder": str(copy)})

    def end(self, error: BaseException | str | None = None) -> None:
        """Buffer the run's end: FINISHED, or FAILED with its reason (see `end_run`)."""
        reason = None if error is None else _failure_reason(error)
        self.journal.append({"kind": "end", "uri": self.uri, "run_id": self.run_id,
                             "reason": reason})

    def close(self, timeout_s: float = JOURNAL_WAIT_S) -> bool:
        """Wait (bounded) for delivery; True if everything reached the server."""
        return self.journal.close(timeout_s)


class _Delivery:
    """Delivers journal records to MLflow; an epoch the run already holds is skipped."""

    def __init__(self):
        self.through: dict[tuple[str, str], int] = {}  # (uri, run) -> last epoch delivered

    def __call__(self, record: dict) -> None:
        key = uri, run_id = record["uri"], record["run_id"]
        try:
            if record["kind"] == "end":
                end_run(uri, run_id, record["reason"])
                return
            if record["kind"] == "weights":  # the same files again after a failed try
                log_weights(uri, run_id, Path(record["folder"]))
                shutil.rmtree(record["folder"], ignore_errors=True)
                return
            if key not in self.through:  # after a restart, or a failed (maybe landed) request
                self.through[key] = last_logged_epoch(uri, run_id)
            if record["step"] <= self.through[key]:
                return
            metrics = record["metrics"] | {EPOCH_METRIC: record["step"]}
            MlflowClient(uri).log_batch(run_id, metrics=[
                Metric(k, v, record["time_ms"], record["step"]) for k, v in metrics.items()])
            self.through[key] = record["step"]
        except Exception:
            self.through.pop(key, None)
            raise


def finish_run(tracking_uri: str, run_id: str, error: BaseException | str | None = None,
               journal: str = "", timeout_s: float = JOURNAL_WAIT_S) -> bool:
    """End the run (see `end_run`) without failing when the server is away: the end is kept
    in the journal then, after the run's metrics, for `byol-ray sync`. True if delivered."""
    logger = RunLogger(tracking_uri, run_id, journal, role="driver")
    logger.end(error)
    return logger.close(timeout_s)


def sync_journals(journal: str = "", tracking_uri: str | None = None) -> tuple[int, int]:
    """Deliver what runs left in the journal folder (all, or those logging to
    `tracking_uri`): each run's metrics before its end. Returns (records delivered, left)."""
    delivered = left = 0
    paths = sorted(journal_dir(journal).glob("*.jsonl"),
                   key=lambda p: (p.name.split(".")[0], p.name.endswith(".driver.jsonl")))
    deliver, reachable = _Delivery(), {}
    for path in paths:
        pending = pending_records(path)
        uri = pending[0]["uri"] if pending else None
        if not uri or (tracking_uri and uri != tracking_uri):
            continue
        if uri not in reachable:  # one quick check, not MLflow's minutes of retries per record
            try:
                check_tracking_store(uri, attempts=1)
                reachable[uri] = True
            except ConfigError as error:
                print(f"[byol-ray] not delivered: {error}", flush=True)
                reachable[uri] = False
        if not reachable[uri]:
            left += len(pending)
            continue
        remaining = drain(path, deliver)
        delivered, left = delivered + len(pending) - remaining, left + remaining
    if delivered:
        print(f"[byol-ray] delivered {delivered} buffered record(s) from {journal_dir(journal)}"
              f"{'; ' + str(left) + ' still undelivered' if left else ''}", flush=True)
    return delivered, left


# --------------------------------------------------------------------------- tables


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
