"""MLflow run lifecycle: create (or re-attach to) a run, log metrics from a worker, end it.

The driver creates the run before any worker starts, so that a run that fails early still
ends FAILED with its reason; the world-rank-0 worker logs metrics to it by id; the driver
ends it. Nothing here knows how training works.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import yaml
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from byol_ray.config import Config, ConfigError, flatten, to_dict

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
    A sqlite store needs its folder. Raises ConfigError naming the URI and what was tried.
    """
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ConfigError(TRACKING_URI_FIELD, f"{uri}: folder {folder} does not exist")
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
        except (urllib.error.URLError, OSError) as error:
            problem = str(getattr(error, "reason", error))
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise ConfigError(TRACKING_URI_FIELD, f"no MLflow server answered at {uri} (POST {url}, "
                      f"{attempts} tries, {timeout_s:g} s each): {problem}; start the server "
                      "or point --tracking-uri elsewhere")


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
) -> str:
    """Create a RUNNING MLflow run holding the config as params, tags and an artifact."""
    client = MlflowClient(tracking_uri)
    experiment_id = experiment_id_for(client, cfg.tracking.experiment)
    all_tags = {"method": cfg.method.name, "preset": cfg.preset, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=cfg.tracking.run_name or None, tags=all_tags)
    run_id = run.info.run_id
    params = [
        mlflow.entities.Param(key, str(value)[:_MAX_PARAM_LENGTH])
        for key, value in flatten(cfg).items()
    ]
    for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=params[i : i + 100])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        client.log_artifact(run_id, str(path))
    return run_id


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


EPOCH_METRIC = "epoch"  # logged with every epoch's batch: how far a run's metrics have reached


def log_epoch(tracking_uri: str, run_id: str, metrics: dict[str, float], epoch: int) -> None:
    """Log one epoch's metrics at step `epoch`, with `epoch` itself in the same request, so that
    `last_logged_epoch` tells a restarted worker which epochs MLflow already holds."""
    log_metrics(tracking_uri, run_id, metrics | {EPOCH_METRIC: epoch}, step=epoch)


def last_logged_epoch(tracking_uri: str, run_id: str) -> int:
    """The last epoch `log_epoch` delivered to the run; -1 when none (a fresh run)."""
    metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    return int(metrics.get(EPOCH_METRIC, -1))  # MLflow keeps a metric's value at its max step


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each metric of the run (what the MLflow UI shows)."""
    return dict(MlflowClient(tracking_uri).get_run(run_id).data.metrics)


def end_run(tracking_uri: str, run_id: str, error: BaseException | str | None = None) -> None:
    """Mark the run FINISHED, or FAILED with the reason in the `failure_reason` tag."""
    client = MlflowClient(tracking_uri)
    if error is None:
        if "failure_reason" in client.get_run(run_id).data.tags:  # an earlier try failed
            client.delete_tag(run_id, "failure_reason")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        return
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


def run_status(tracking_uri: str, run_id: str) -> str:
    """The run's MLflow status (RUNNING, FINISHED, FAILED, ...)."""
    return MlflowClient(tracking_uri).get_run(run_id).info.status


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
    """Upload a weights folder (`byol_ray.encoder_io`) as the run's `weights/` artifacts."""
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

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(data))
        MlflowClient(tracking_uri).log_artifact(run_id, str(path))


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
