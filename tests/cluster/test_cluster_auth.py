"""The clusters answer only to their own (issue 33): Ray's token authentication and MLflow's
basic-auth app, as the configs in cluster/ set them up.

Static checks of every config, and a loopback test that runs the launcher head's own commands
(cluster/local.yaml: the secrets, the MLflow server, `ray up`'s probe that makes its users) in
bash with a HOME of its own, and a Ray head with the environment the configs give every node:
a client without the token or the MLflow password is refused, one with them is not.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_servers import free_ports, ray_node

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
LAUNCHER_CONFIGS = [CLUSTER / "gpu.yaml", CLUSTER / "local.yaml"]
KUBERAY = CLUSTER / "kuberay"
TOKEN = "byol-ray-mlflow/secrets/ray_auth_token"  # under the head's HOME
BIN = Path(sys.executable).parent


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_every_node_runs_ray_with_the_heads_token_and_mlflow_with_basic_auth(path):
    config = _load(path)
    setup = "\n".join(config["setup_commands"])
    assert "RAY_AUTH_MODE=token" in setup and f"RAY_AUTH_TOKEN_PATH=\\$HOME/{TOKEN}" in setup
    assert "secrets/trials.env" in setup  # MLFLOW_TRACKING_USERNAME/PASSWORD of the trials
    assert config["cluster_synced_files"] == ["~/byol-ray-mlflow/secrets"]
    head = "\n".join(config.get("head_setup_commands", []) + config["head_start_ray_commands"])
    assert "/dev/urandom" in head and "umask 077" in head and "secrets/ray_auth_token" in head
    [server] = [line for line in head.splitlines() if "exec mlflow server" in line]
    assert "--app-name basic-auth" in server and "MLFLOW_AUTH_CONFIG_PATH=" in server
    assert "$(cat $HOME/byol-ray-mlflow/admin.pw)" in server  # the value never on a line
    assert "0.0.0.0" not in head and "dashboard-host" not in head


def test_kuberay_turns_on_token_auth_and_mlflow_basic_auth():
    [job] = [d for d in _docs("rayjob-batch-size.yaml") if d["kind"] == "RayJob"]
    spec = job["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}  # the dashboard on 0.0.0.0 needs the token
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0],
                  *(g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"])]
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert env["MLFLOW_TRACKING_USERNAME"]["value"] == "trials"
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "byol-ray-mlflow-auth", "key": "trials-password"}
    docs = _docs("mlflow.yaml")
    [server] = [d for d in docs if d["kind"] == "Deployment"]
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert "--app-name=basic-auth" in container["command"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
        "admin-password")
    [users] = [d for d in docs if d["kind"] == "Job"]
    assert "users/create" in users["spec"]["template"]["spec"]["containers"][0]["command"][2]


# ------------------------------------------------------------------------- loopback, for real


def _head_commands() -> tuple[str, str, str]:
    """local.yaml's head commands: (the secrets, the MLflow server, the probe)."""
    commands = _load(CLUSTER / "local.yaml")["head_start_ray_commands"]
    [secrets] = [c for c in commands if "secrets/ray_auth_token" in c]
    [server] = [c for c in commands if "exec mlflow server" in c]
    [probe] = [c for c in commands if "users/create" in c]
    return secrets, server, probe


def _bash(command: str, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _search(uri: str, user: str = "", password: str = "") -> int:
    """The HTTP status of an MLflow API call, as `user` (none: no credentials)."""
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search",
                                     data=b'{"max_results": 1}', headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment without Ray's or MLflow's credentials, HOME at `home`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "MLFLOW_TRACKING_"))}
    return {**env, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}


@pytest.fixture
def head(tmp_path):
    """The head's HOME after local.yaml's secrets command and its MLflow server (on
    127.0.0.1) with `ray up`'s probe, which makes the users; yields (HOME, env, tracking URI)."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_ports(1)[0]
    uri = f"http://127.0.0.1:{port}"
    env = {**_clean_env(home), "BYOL_RAY_HEAD": "127.0.0.1", "BYOL_MLFLOW_PORT": str(port),
           "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    secrets, server, probe = _head_commands()
    _bash(secrets, env)
    try:
        _bash(server, env)
        _bash(f". ~/byol-ray-mlflow/secrets/trials.env && {probe}", env)
        yield home, env, uri
    finally:
        pid = home / "byol-ray-mlflow" / "server.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid.read_text()), signal.SIGTERM)


def _trials(home: Path) -> tuple[str, str]:
    line = (home / "byol-ray-mlflow" / "secrets" / "trials.env").read_text()
    values = dict(item.split("=", 1) for item in line.split()[1:])
    return values["MLFLOW_TRACKING_USERNAME"], values["MLFLOW_TRACKING_PASSWORD"]


@pytest.mark.slow
def test_mlflow_answers_only_its_users_and_the_reader_only_reads(head):
    home, env, uri = head
    store = home / "byol-ray-mlflow"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (store / "admin.pw",
            store / "reader.pw", store / "secrets" / "trials.env")} == {
        "admin.pw": "0o600", "reader.pw": "0o600", "trials.env": "0o600"}
    user, password = _trials(home)
    assert _search(uri) == 401
    assert _search(uri, user, "wrong-password") == 401
    assert _search(uri, user, password) == 200
    reader = (store / "reader.pw").read_text().strip()
    assert _search(uri, "reader", reader) == 200
    # A trial's client, credentials from the environment as on every node: it logs a run.
    script = ("from mlflow.tracking import MlflowClient; c = MlflowClient(); "
              "e = c.create_experiment('auth'); r = c.create_run(e); "
              "c.log_param(r.info.run_id, 'a', '1'); print(e)")
    trial = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300, env={**env, "MLFLOW_TRACKING_USERNAME": user,
                                             "MLFLOW_TRACKING_PASSWORD": password})
    assert trial.returncode == 0, trial.stderr[-3000:]
    experiment = trial.stdout.strip().splitlines()[-1]
    # The reader may read the trials' experiment but not rename (or delete) it.
    headers = {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(
        f"reader:{reader}".encode()).decode()}
    rename = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/update", method="POST", headers=headers,
        data=json.dumps({"experiment_id": experiment, "new_name": "taken"}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rename, timeout=30)
    assert refused.value.code == 403
    # Without credentials the driver's preflight stops at once, naming what to set.
    check = subprocess.run(
        [sys.executable, "-c", "from byol_ray.runtime.tracking.store import "
         f"check_tracking_store as c; c('{uri}')"], capture_output=True, text=True,
        timeout=300, env=env)
    assert check.returncode != 0 and "HTTP 401" in check.stderr
    assert "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in check.stderr


CONNECT = ("import ray; ray.init(address='{address}'); "
           "print('ran', ray.get(ray.remote(lambda: 1).remote()))")


@pytest.mark.slow
def test_ray_answers_only_clients_with_the_heads_token(head):
    home, _, _ = head
    token = home / TOKEN
    node_env = {**_clean_env(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    with ray_node(env=node_env, num_cpus=1) as node:
        stranger = _clean_env(home.parent / "stranger")  # no ~/.ray/auth_token there
        (home.parent / "stranger").mkdir()
        for name, env in {"no token": stranger,
                          "a wrong token": {**stranger, "RAY_AUTH_MODE": "token",
                                            "RAY_AUTH_TOKEN": "0" * 64},
                          "the token": node_env}.items():
            try:
                client = subprocess.run(
                    [sys.executable, "-c", CONNECT.format(address=node.address)],
                    capture_output=True, text=True, timeout=300, env=env)
                output, code = client.stdout + client.stderr, client.returncode
            except subprocess.TimeoutExpired as waited:  # a client left retrying: refused too
                output, code = f"{waited.stdout or ''}{waited.stderr or ''}", None
            if name == "the token":
                assert code == 0 and "ran 1" in output, output[-3000:]
            else:
                assert code != 0 and "ran 1" not in output, (name, output[-3000:])
