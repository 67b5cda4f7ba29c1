"""The files in cluster/ are ones their tools accept, and broken copies of them are caught.

Ray cluster launcher configs (cluster/*.yaml) go through the checks `ray up` makes before it
contacts a cloud: Ray's own schema (ray-schema.json, by `validate_config`) on the file as written
and on the config with Ray's defaults merged in (`prepare_config`). (For AWS, `ray up` also asks
EC2 for the node types' resources; the configs give them, so nothing here needs AWS.) KubeRay
manifests (cluster/kuberay/*.yaml) are checked for the fields KubeRay requires of a RayJob or
RayCluster, a GPU worker group, and MLflow's address in every Ray container's environment.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = sorted(CLUSTER.glob("*.yaml"))
KUBERAY_MANIFESTS = sorted((CLUSTER / "kuberay").glob("*.yaml"))
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
TRACKING_ENV = "MLFLOW_TRACKING_URI"
GPU = "nvidia.com/gpu"


class ManifestError(ValueError):
    """A Kubernetes manifest lacks something KubeRay (or the sweeps) need."""


# --------------------------------------------------------------------------- launcher configs


def check_launcher_config(config: dict[str, Any]) -> None:
    """Raise if `ray up` would reject the config, or a file it mounts is not in the checkout."""
    jsonschema.validate(config, RAY_SCHEMA)  # as written: a misspelt key, a missing provider
    validate_config(prepare_config(copy.deepcopy(config)))  # with Ray's defaults, as `ray up`
    for remote, local in config.get("file_mounts", {}).items():
        if not (ROOT / local).exists():  # `ray up` runs from the repository root
            raise FileNotFoundError(f"file_mounts[{remote!r}]: {local} is not in the checkout")
    commands = config.get("setup_commands", [])
    if not any(TRACKING_ENV in command for command in commands):
        raise ValueError(f"setup_commands (every node) do not set {TRACKING_ENV}")
    if not any("mlflow server" in command for command in config["head_start_ray_commands"]):
        raise ValueError("head_start_ray_commands do not start the MLflow server")


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_there_are_launcher_configs_for_a_cloud_and_for_machines_you_own():
    providers = {_load(path)["provider"]["type"] for path in LAUNCHER_CONFIGS}
    assert {"aws", "local"} <= providers, LAUNCHER_CONFIGS


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_passes_rays_validation(path):
    check_launcher_config(_load(path))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_the_mlflow_server_is_bound_to_the_head_and_checked_with_a_real_api_call(path):
    """Issue 13: MLflow refused the trials' API calls (403, Host header of the head's own
    address) while `ray up` reported success, because its probe asked /health, which MLflow
    exempts; and it listened on every interface without authentication."""
    commands = "\n".join(_load(path)["head_start_ray_commands"])
    [server] = [line for line in commands.splitlines() if "exec mlflow server" in line]
    assert "--host $BYOL_RAY_HEAD " in server and "0.0.0.0" not in server
    # --allowed-hosts replaces MLflow's defaults: the head's address and the SSH forward's.
    assert '--allowed-hosts "$BYOL_RAY_HEAD:$BYOL_MLFLOW_PORT,localhost:*,127.0.0.1:*"' in server
    assert "/api/2.0/mlflow/experiments/search" in commands and "/health" not in commands
    # MLflow 3's job runner and its huey consumers (~2 GB; no byol-ray job uses them): off.
    assert "sh -c 'echo $$ > server.pid; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false " in server


def test_the_gpu_config_has_gpu_worker_types_and_a_head_without_gpus():
    config = _load(CLUSTER / "gpu.yaml")
    types = config["available_node_types"]
    assert "GPU" not in types[config["head_node_type"]]["resources"]
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) > 0]
    assert any(t["resources"]["GPU"] == 8 and t.get("max_workers", 0) > 0 for t in gpu_types)
    assert all(t.get("min_workers", 0) == 0 for t in gpu_types)  # they scale from zero


def _drop(key: str) -> Callable[[dict], None]:
    return lambda c: c.pop(key)


LAUNCHER_BREAKAGES: dict[str, tuple[Callable[[dict], None], type[Exception]]] = {
    "missing provider": (_drop("provider"), jsonschema.ValidationError),
    "misspelt key": (lambda c: c.update(setup_command=c.pop("setup_commands")),
                     jsonschema.ValidationError),
    "unknown auth key": (lambda c: c["auth"].update(ssh_key="~/.ssh/id_rsa"),
                         jsonschema.ValidationError),
    "wrong type": (lambda c: c.update(file_mounts=["./byol_ray"]), jsonschema.ValidationError),
    "mount of a missing file": (lambda c: c["file_mounts"].update({"~/x": "./no_such_file"}),
                                FileNotFoundError),
    "no tracking URI for workers": (lambda c: c.update(setup_commands=["true"]), ValueError),
    "no MLflow server": (lambda c: c.update(head_start_ray_commands=["ray start --head"]),
                         ValueError),
}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("breakage", LAUNCHER_BREAKAGES)
def test_a_broken_launcher_config_is_caught(path, breakage):
    config = _load(path)
    mutate, error = LAUNCHER_BREAKAGES[breakage]
    mutate(config)
    with pytest.raises(error):
        check_launcher_config(config)


GPU_CONFIG_BREAKAGES: dict[str, tuple[Callable[[dict], None], type[Exception]]] = {
    "node type without resources": (
        lambda c: c["available_node_types"]["gpu-8x-a100"].pop("resources"),
        jsonschema.ValidationError),
    "misspelt node type key": (
        lambda c: c["available_node_types"]["gpu-8x-a100"].update(max_worker=2),
        jsonschema.ValidationError),
    "unknown head node type": (lambda c: c.update(head_node_type="cpu-head"), ValueError),
    "min_workers over max_workers": (
        lambda c: c["available_node_types"]["gpu-8x-a100"].update(min_workers=99), ValueError),
}


@pytest.mark.parametrize("breakage", GPU_CONFIG_BREAKAGES)
def test_a_broken_node_type_is_caught(breakage):
    config = _load(CLUSTER / "gpu.yaml")
    mutate, error = GPU_CONFIG_BREAKAGES[breakage]
    mutate(config)
    with pytest.raises(error):
        check_launcher_config(config)


# --------------------------------------------------------------------------- KubeRay manifests


def _at(obj: Any, path: str, where: str) -> Any:
    """obj[path] for a dotted path with [i] indices, or ManifestError naming what is missing."""
    node = obj
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            ok = isinstance(node, list) and index < len(node)
            node = node[index] if ok else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise ManifestError(f"{where}: {path} is missing")
    return node


def _check_containers(pod_spec: dict, where: str) -> list[dict]:
    containers = _at(pod_spec, "containers", where)
    if not isinstance(containers, list) or not containers:
        raise ManifestError(f"{where}: containers must be a non-empty list")
    for i, container in enumerate(containers):
        _at(container, "name", f"{where}.containers[{i}]")
        if not isinstance(_at(container, "image", f"{where}.containers[{i}]"), str):
            raise ManifestError(f"{where}.containers[{i}].image must be a string")
        names = [env.get("name") for env in container.get("env", [])]
        if TRACKING_ENV not in names:
            raise ManifestError(f"{where}.containers[{i}]: no {TRACKING_ENV} in env")
    return containers


def _check_start_params(params: Any, where: str) -> None:
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise ManifestError(f"{where}.rayStartParams must map names to strings")


def check_ray_cluster_spec(spec: dict, where: str) -> None:
    """The fields of a RayClusterSpec that KubeRay requires, and a GPU worker group."""
    head = _at(spec, "headGroupSpec", where)
    _check_start_params(_at(head, "rayStartParams", f"{where}.headGroupSpec"),
                        f"{where}.headGroupSpec")
    _check_containers(_at(head, "template.spec", f"{where}.headGroupSpec"),
                      f"{where}.headGroupSpec.template.spec")
    groups = _at(spec, "workerGroupSpecs", where)
    if not isinstance(groups, list) or not groups:
        raise ManifestError(f"{where}.workerGroupSpecs must be a non-empty list")
    gpus = 0
    for i, group in enumerate(groups):
        at = f"{where}.workerGroupSpecs[{i}]"
        _at(group, "groupName", at)
        counts = {key: _at(group, key, at) for key in ("replicas", "minReplicas", "maxReplicas")}
        if not all(isinstance(n, int) and n >= 0 for n in counts.values()):
            raise ManifestError(f"{at}: replicas, minReplicas, maxReplicas must be integers >= 0")
        if not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
            raise ManifestError(f"{at}: need minReplicas <= replicas <= maxReplicas")
        if "rayStartParams" in group:
            _check_start_params(group["rayStartParams"], at)
        for container in _check_containers(_at(group, "template.spec", at), f"{at}.template.spec"):
            limit = container.get("resources", {}).get("limits", {}).get(GPU, 0)
            gpus = max(gpus, int(limit))
    if gpus < 1:
        raise ManifestError(f"{where}: no worker group has a {GPU} limit")


def check_kuberay_manifests(docs: list[dict]) -> None:
    """Every object has apiVersion/kind/name; RayJobs and RayClusters have what KubeRay needs;
    the ConfigMap keys that containers read MLflow's address from exist."""
    config_maps = {}
    for doc in docs:
        for key in ("apiVersion", "kind", "metadata.name"):
            _at(doc, key, f"a {doc.get('kind', 'manifest')}")
        if doc["kind"] == "ConfigMap":
            config_maps[doc["metadata"]["name"]] = doc.get("data", {})
    ray_objects = [doc for doc in docs if doc["kind"] in ("RayJob", "RayCluster")]
    if not ray_objects:
        raise ManifestError("no RayJob or RayCluster")
    for doc in ray_objects:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["apiVersion"] != "ray.io/v1":
            raise ManifestError(f"{where}: apiVersion must be ray.io/v1, not {doc['apiVersion']}")
        if doc["kind"] == "RayJob":
            if not isinstance(_at(doc, "spec.entrypoint", where), str):
                raise ManifestError(f"{where}: spec.entrypoint must be a command line")
            check_ray_cluster_spec(_at(doc, "spec.rayClusterSpec", where),
                                   f"{where}: spec.rayClusterSpec")
        else:
            check_ray_cluster_spec(_at(doc, "spec", where), f"{where}: spec")
        for ref in _config_map_refs(doc):
            if ref.get("key") not in config_maps.get(ref.get("name"), {}):
                raise ManifestError(f"{where}: no ConfigMap {ref.get('name')} with key "
                                    f"{ref.get('key')} in cluster/kuberay")


def _config_map_refs(obj: Any) -> list[dict]:
    if isinstance(obj, dict):
        own = [obj["configMapKeyRef"]] if "configMapKeyRef" in obj else []
        return own + [ref for value in obj.values() for ref in _config_map_refs(value)]
    if isinstance(obj, list):
        return [ref for value in obj for ref in _config_map_refs(value)]
    return []


def _kuberay_docs() -> list[dict]:
    return [doc for path in KUBERAY_MANIFESTS for doc in yaml.safe_load_all(path.read_text())
            if doc is not None]


def test_kuberay_manifests_have_what_kuberay_requires():
    assert KUBERAY_MANIFESTS
    check_kuberay_manifests(_kuberay_docs())


def _ray_job(docs: list[dict]) -> dict:
    return next(doc for doc in docs if doc["kind"] == "RayJob")


def _workers(docs: list[dict]) -> dict:
    return _ray_job(docs)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _worker_container(docs: list[dict]) -> dict:
    return _workers(docs)["template"]["spec"]["containers"][0]


def _config_map(docs: list[dict]) -> dict:
    return next(doc for doc in docs if doc["kind"] == "ConfigMap")


KUBERAY_BREAKAGES: dict[str, Callable[[list[dict]], None]] = {
    "wrong apiVersion": lambda d: _ray_job(d).update(apiVersion="ray.io/v1alpha1"),
    "no entrypoint": lambda d: _ray_job(d)["spec"].pop("entrypoint"),
    "no head rayStartParams": lambda d: _ray_job(d)["spec"]["rayClusterSpec"]["headGroupSpec"]
    .pop("rayStartParams"),
    "rayStartParams not strings": lambda d: _workers(d).update(rayStartParams={"num-cpus": 8}),
    "no groupName": lambda d: _workers(d).pop("groupName"),
    "no minReplicas": lambda d: _workers(d).pop("minReplicas"),
    "replicas over maxReplicas": lambda d: _workers(d).update(replicas=99),
    "no worker template": lambda d: _workers(d).pop("template"),
    "container without image": lambda d: _worker_container(d).pop("image"),
    "no GPU limit": lambda d: _worker_container(d)["resources"]["limits"].pop(GPU),
    "no MLflow address": lambda d: _worker_container(d).update(env=[]),
    "ConfigMap key renamed": lambda d: _config_map(d).update(data={"uri": "http://x:5000"}),
    "no kind": lambda d: _config_map(d).pop("kind"),
}


@pytest.mark.parametrize("breakage", KUBERAY_BREAKAGES)
def test_a_broken_kuberay_manifest_is_caught(breakage):
    docs = _kuberay_docs()
    KUBERAY_BREAKAGES[breakage](docs)
    with pytest.raises(ManifestError):
        check_kuberay_manifests(docs)


# --------------------------------------------------------------------------- pinned versions


def _pins() -> dict[str, str]:
    lines = (CLUSTER / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_one_pin_of_ray_and_torch_is_the_tested_one_and_every_cluster_file_uses_it():
    """cluster/versions.env names the Ray and torch of the environment the tests run in; every
    launcher config installs and checks those, and every Ray image tag names that Ray."""
    import torch

    pins = _pins()
    ray_pin, torch_pin = pins["BYOL_RAY_VERSION"], pins["BYOL_TORCH_VERSION"]
    assert ray_pin == ray.__version__ and torch_pin == torch.__version__.split("+")[0]
    for path in LAUNCHER_CONFIGS:
        config = _load(path)
        assert config["file_mounts"]["~/byol-ray/cluster/versions.env"] == "./cluster/versions.env"
        setup = "\n".join(config["setup_commands"])
        assert '"ray[default,train,tune]==$BYOL_RAY_VERSION" "torch==$BYOL_TORCH_VERSION"' in setup
        assert "cluster/versions.env pins Ray" in setup  # `ray up` stops on another version
    assert _load(CLUSTER / "gpu.yaml")["docker"]["image"].startswith(f"rayproject/ray:{ray_pin}-")
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray_pin}-" in dockerfile
    assert '"torch==$BYOL_TORCH_VERSION"' in dockerfile
    ray_versions = [(doc["spec"].get("rayClusterSpec") or doc["spec"])["rayVersion"]
                    for path in KUBERAY_MANIFESTS for doc in yaml.safe_load_all(path.read_text())
                    if doc and doc["kind"] in ("RayJob", "RayCluster")]
    assert ray_versions and set(ray_versions) == {ray_pin}


# --------------------------------------------------------------------------- tracking store

# A database URI that carries a password: scheme://user:password@host
URI_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s@:]+:[^/\s@]+@")


def test_the_launcher_head_keeps_mlflows_runs_in_postgresql_started_and_probed_before_it():
    """Issue 20: PostgreSQL served twice SQLite's requests at 64 trials in
    benchmarks/tracking_load.py (cluster/README.md). gpu.yaml's head installs it, initialises
    it with password authentication on 127.0.0.1, waits for pg_isready, and only then starts
    MLflow over it, the password in a passfile that MLflow's driver reads (PGPASSFILE), never
    in the URI."""
    config = _load(CLUSTER / "gpu.yaml")
    setup = "\n".join(config["head_setup_commands"])
    assert "apt-get install -y -qq postgresql" in setup and "psycopg[binary]" in setup
    commands = config["head_start_ray_commands"]
    [start] = [i for i, c in enumerate(commands) if "initdb" in c]
    [server] = [i for i, c in enumerate(commands) if "exec mlflow server" in c]
    assert start < server, "PostgreSQL must be ready before MLflow starts"
    pg = commands[start]
    assert "--auth=scram-sha-256" in pg and "--pwfile=" in pg and "-h 127.0.0.1 " in pg
    assert "pg_isready" in pg and "umask 077" in pg
    line = next(x for x in commands[server].splitlines() if "exec mlflow server" in x)
    assert ("--backend-store-uri postgresql+psycopg://mlflow@127.0.0.1:$BYOL_PG_PORT/mlflow"
            in line)
    assert ("PGPASSFILE=$HOME/byol-ray-mlflow/pgpass MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=40 "
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=40 ") in line and " exec mlflow server" in line
    assert "max_connections=300" in pg  # 2 server workers x (40 + 40) connections fit
    assert '--uvicorn-opts "--timeout-worker-healthcheck 60"' in line
    assert "sqlite" not in "\n".join(commands)
    assert "BYOL_PG_PORT=5432" in "\n".join(config["setup_commands"])


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kuberays_mlflow_keeps_its_runs_in_postgresql_behind_readiness_probes():
    """A PostgreSQL StatefulSet (unprivileged, password from a Secret, ready on pg_isready)
    and its Service; MLflow waits for it (an init container running pg_isready), reads the
    password from the Secret as PGPASSWORD, and its store URI names none."""
    docs = _kuberay_docs()
    [db] = [d for d in docs if d["kind"] == "StatefulSet"]
    pod = db["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    [postgres] = pod["containers"]
    assert postgres["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert _env(postgres)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "byol-ray-postgres")
    assert any(d["kind"] == "Service" and d["metadata"]["name"] == db["spec"]["serviceName"]
               for d in docs)
    [mlflow] = [d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"] == "byol-ray-mlflow"]
    spec = mlflow["spec"]["template"]["spec"]
    [wait] = spec["initContainers"]
    assert "pg_isready" in " ".join(wait["command"])
    [server] = spec["containers"]
    env = _env(server)
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == (
        "postgresql+psycopg://mlflow@byol-ray-postgres:5432/mlflow")
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "byol-ray-postgres",
                                                               "key": "password"}
    assert not any("backend-store-uri" in arg for arg in server["command"])
    assert "--uvicorn-opts=--timeout-worker-healthcheck 60" in server["command"]
    assert env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]["value"] == "40"  # tracking_load.py's
    assert env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]["value"] == "40"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "readinessProbe" in server


def test_no_cluster_file_holds_a_password():
    """Passwords come from a Secret (KubeRay) or a file made on the head (gpu.yaml): no
    Secret with data, no password variable with a literal value, no URI with a password."""
    for path in [*LAUNCHER_CONFIGS, *KUBERAY_MANIFESTS, CLUSTER / "Dockerfile"]:
        text = path.read_text()
        assert not URI_WITH_PASSWORD.search(text), (path.name, URI_WITH_PASSWORD.search(text))
        assert not re.search(r"PGPASSWORD=|POSTGRES_PASSWORD=|--password", text), path.name
    for doc in _kuberay_docs():
        assert not (doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData")))
        for variable in _all_env(doc):
            if "PASSWORD" in variable["name"]:
                assert "value" not in variable and "secretKeyRef" in variable["valueFrom"]
    assert URI_WITH_PASSWORD.search("postgresql+psycopg://mlflow:s3cret@db:5432/mlflow")


def _all_env(obj: Any) -> list[dict]:
    """Every container env entry in a manifest."""
    if isinstance(obj, dict):
        own = [e for e in obj.get("env", []) if isinstance(e, dict) and "name" in e]
        return own + [e for key, value in obj.items() if key != "env" for e in _all_env(value)]
    if isinstance(obj, list):
        return [e for value in obj for e in _all_env(value)]
    return []
