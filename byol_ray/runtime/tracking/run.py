"""One MLflow run as an object: created by the driver before any worker starts (a run that
fails early still ends FAILED with its reason) or reached by id, described by its config, given
metrics, artifacts and weights, ended. Nothing here knows how training works."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from byol_ray.core.config import Config, flatten, to_dict
from byol_ray.core.masking import mask, mask_tree
from byol_ray.runtime.tracking.inputs import dataset_input, source_tags
from byol_ray.runtime.tracking.store import experiment_id_for

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
WEIGHTS_ARTIFACT = "weights"  # the artifact folder of a run's trained networks


def client_for(tracking_uri: str) -> MlflowClient:
    """A client of the store at `tracking_uri`, its Model Registry included."""
    return MlflowClient(tracking_uri, registry_uri=tracking_uri)


def failure_reason(error: BaseException | str) -> str:
    """The `failure_reason` tag of a run that ended with `error` (MLflow's tag limit)."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return mask(reason)[:5000]


@dataclass(frozen=True)
class RunRecord:
    """What the console shows of a run: its id, status, metrics (last value), params, tags."""

    run_id: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    experiment_id: str = ""  # where the UI lists it (`ui.runs_page`)

    @classmethod
    def of(cls, run: mlflow.entities.Run) -> RunRecord:
        """The record of a run MLflow returned."""
        return cls(run.info.run_id, run.info.status, dict(run.data.metrics),
                   dict(run.data.params), dict(run.data.tags), run.info.experiment_id)

    def describes(self, cfg: Config) -> bool:
        """Whether `Run.describe` completed for this run (every param of the config is here)."""
        return set(flatten(cfg)) <= set(self.params)


class Run:
    """One run of the store at `uri`, reached through one client."""

    def __init__(self, uri: str, run_id: str, client: MlflowClient | None = None):
        self.uri, self.run_id = uri, run_id
        self.client = client or client_for(uri)

    @classmethod
    def start(cls, cfg: Config, uri: str, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None, describe: bool = True) -> Run:
        """Create a RUNNING run holding the config as params, tags and an artifact
        (`describe=False`: tags only; the caller calls `describe`)."""
        client = client_for(uri)
        all_tags = {key: mask(value) for key, value in {
            "method": cfg.method.name, "preset": cfg.preset, **source_tags(), **(tags or {})
        }.items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        created = client.create_run(experiment_id_for(client, cfg.tracking.experiment),
                                    run_name=cfg.tracking.run_name or None, tags=all_tags)
        run = cls(uri, created.info.run_id, client)
        if describe:
            run.describe(cfg)
        return run

    def describe(self, cfg: Config) -> None:
        """Log the dataset input and the config as `config.yaml`, then as params. A run that
        holds all of them is described (`RunRecord.describes`); the calls can be repeated (the
        same param value or dataset again is accepted), which a sweep resumed after its driver
        was killed mid-description relies on."""
        self.client.log_inputs(self.run_id, datasets=[dataset_input(cfg.data)])
        shown = mask_tree(to_dict(cfg))  # no password or token of a URI is stored
        self.client.log_text(self.run_id, yaml.safe_dump(shown, sort_keys=False), "config.yaml")
        params = [Param(key, mask_tree(str(value), key)[:MAX_PARAM_LENGTH])  # last: described
                  for key, value in flatten(cfg).items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def read(self) -> RunRecord:
        """The run as it stands in MLflow."""
        return RunRecord.of(self.client.get_run(self.run_id))

    def log_metrics(self, metrics: dict[str, float], step: int, time_ms: int | None = None) -> None:
        """Log numeric metrics at one step (an epoch) in one request (at `time_ms`: now)."""
        time_ms = time_ms or int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), time_ms, step)
                                                    for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run in one request."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def set_status(self, status: str) -> None:
        """Mark the run SCHEDULED or RUNNING (a trial queued, started, or a sweep resumed)."""
        self.client.update_run(self.run_id, status=status)

    def end(self, error: BaseException | str | None = None) -> None:
        """Mark the run FINISHED, or FAILED with the reason in the `failure_reason` tag."""
        if error is None:
            if "failure_reason" in self.read().tags:  # an earlier try failed
                self.client.delete_tag(self.run_id, "failure_reason")
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
            return
        self.client.set_tag(self.run_id, "failure_reason", failure_reason(error))
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))

    def log_json(self, name: str, data: object) -> None:
        """Save `data` as the JSON artifact `name` (e.g. a protocol's image indices)."""
        self.client.log_text(self.run_id, json.dumps(data), name)

    def log_weights(self, folder: Path) -> None:
        """Upload a weights folder (`byol_ray.runtime.weights`) as the run's `weights/`."""
        self.client.log_artifacts(self.run_id, str(folder), WEIGHTS_ARTIFACT)

    def register_weights(self, name: str) -> str:
        """Register the run's weights in the MLflow Model Registry as a new version of `name`;
        returns the version (load it as `models:/NAME/VERSION`)."""
        try:
            self.client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            self.client.create_registered_model(name,
                                                description="byol-ray trained encoder weights")
        source = f"runs:/{self.run_id}/{WEIGHTS_ARTIFACT}"
        return self.client.create_model_version(name, source=source, run_id=self.run_id).version


def download_weights(ref: str, tracking_uri: str, folder: Path) -> tuple[Path, str]:
    """The weights folder that `ref` names, downloaded into `folder`, and the id of the run
    that saved it. `ref` is a run id, `runs:/<id>[/weights[/FILE]]` or `models:/NAME/VERSION`.

    Raises LookupError with MLflow's reason when the run, model version or folder does not
    exist.
    """
    client = client_for(tracking_uri)
    try:
        if ref.startswith("models:/"):
            name, _, version = ref.removeprefix("models:/").partition("/")
            model_version = client.get_model_version(name, version)
            source, run_id = model_version.source, model_version.run_id
        else:
            run_id, _, path = ref.removeprefix("runs:/").partition("/")
            client.get_run(run_id)  # a clear "not found" first
            path = path.rstrip("/") or WEIGHTS_ARTIFACT
            if Path(path).suffix:  # a file inside the folder: take the folder
                path = str(Path(path).parent)
            source = f"runs:/{run_id}/{path}"
        local = download_artifacts(artifact_uri=source, dst_path=str(folder),
                                   tracking_uri=tracking_uri)
    except mlflow.exceptions.MlflowException as error:
        raise LookupError(error.message) from None
    return Path(local), run_id
