"""Which tracking store, and whether it is there: URI resolution, the bounded check of a store
before Ray starts, experiments by name."""

from __future__ import annotations

import base64
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from byol_ray.core.config import ConfigError
from byol_ray.core.masking import mask

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow 3's UI up to 3.17 opens an experiment on its runs (not its GenAI overview) when it
# carries this tag (the UI's ExperimentKind enum: custom_model_development vs genai_development);
# 3.18 decides by a global setting instead, so links name the view (`ui.runs_page`).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
TRACKING_URI_FIELD = "--tracking-uri"  # how errors name the tracking URI
# Schemes MLflow has a tracking store for (a database URI may name its driver: mysql+pymysql).
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql",
                    "databricks")


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
    A sqlite store needs an existing folder it can be created in (no folder is made). Raises
    ConfigError naming the URI and what was tried.
    """
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.exists():  # a typo in the path must not make folders
            raise ConfigError(TRACKING_URI_FIELD, f"{uri}: the folder {folder} does not exist; "
                              "create it, or fix the path")
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(TRACKING_URI_FIELD, f"{uri}: cannot create the database in "
                              f"{folder} ({folder} is not a writable folder)")
        return
    if not uri.startswith(("http://", "https://")):
        return
    url, credentials = _without_userinfo(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search")
    request = urllib.request.Request(url, data=b'{"max_results": 1}', method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(credentials or _auth_headers())})
    url = mask(url)  # as errors show it
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


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """`url` without `user:password@` (urllib would take it for the host) and the basic-auth
    header it stands for, as MLflow's client (requests) sends it; ({} when it has none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    user, password = (urllib.parse.unquote(v or "") for v in (parts.username, parts.password))
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {basic}"}


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's own client would send (basic auth or a bearer token)."""
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
                .decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def experiment_id_for(client: MlflowClient, name: str) -> str:
    """The id of the named experiment, created on first use as a model-training experiment
    (`EXPERIMENT_KIND`; one made before that tag existed gets it now)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                      EXPERIMENT_KIND)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(client, name),
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
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
