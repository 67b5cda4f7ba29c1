"""`ray up`'s MLflow readiness probe, as the launcher configs write it, against a real server.

Issue 13: on a head whose address MLflow's Host-header check did not allow, every API call of
the trials got `403 Invalid Host header` while `ray up` reported success, because its probe
asked /health, which MLflow exempts from the check. Here a real `mlflow server` on 127.0.0.1
allows `localhost:*` only, so a head advertised as 127.0.0.1 is one it does not list: each
config's probe, run as `ray up` runs it (bash, the head's HOME holding the server's log), must
fail naming the 403, where /health answers 200; and pass at an address the server allows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest
import yaml
from local_servers import MLFLOW_SERVER_ENV, kill_session

# A real `mlflow server` (seconds to start, minutes on a loaded machine): the slow tier.
pytestmark = pytest.mark.slow

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
PROBE_URL = "/api/2.0/mlflow/experiments/search"
# How long the server may take to start or answer: on the loaded 2-core machine (load 10-30)
# one uvicorn worker took over 10 s for /health and minutes to start.
PATIENCE_S = 600


def _probes() -> dict[str, str]:
    """Each launcher config's readiness probe: the head command that asks MLflow's API."""
    probes = {}
    for path in sorted(CLUSTER.glob("*.yaml")):
        commands = yaml.safe_load(path.read_text())["head_start_ray_commands"]
        [probe] = [c for c in commands if PROBE_URL in c and "mlflow server" not in c]
        probes[path.name] = probe
    return probes


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head's HOME with a real MLflow server on 127.0.0.1 that allows `localhost:*` only
    (its log where the configs keep it); yields (HOME, port)."""
    home = tmp_path_factory.mktemp("head")
    store = home / "byol-ray-mlflow"
    store.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(store / "server.log", "w") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(port), "--allowed-hosts", "localhost:*", "--workers", "1",
             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
             "--artifacts-destination", str(store / "artifacts")],
            cwd=store, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **MLFLOW_SERVER_ENV, "MLFLOW_DISABLE_TELEMETRY": "true",
                 "DO_NOT_TRACK": "true"})
    try:
        _wait_until_answering(f"http://localhost:{port}", server, store / "server.log")
        yield home, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.wait(timeout=60)
        kill_session(server)  # what of its session is left (MLflow 3's job consumers)


def _wait_until_answering(uri: str, server: subprocess.Popen, log: Path) -> None:
    """Return once the server answers a real API call at an address it allows (its tables
    made), so the probes below meet a started server; fail if it ends or PATIENCE_S passes."""
    from byol_ray.core.config import ConfigError
    from byol_ray.runtime.tracking.store import check_tracking_store

    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            check_tracking_store(uri, attempts=1, timeout_s=30)
            return
        except ConfigError:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)


def _health(url: str) -> int:
    """The status /health answers with, asked until it answers (each try may wait 60 s)."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as health:
                return health.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, f"{url} never answered"


def _run_probe(probe: str, home: Path, tracking_uri: str) -> subprocess.CompletedProcess:
    """The probe as `ray up` runs it on the head: in bash, `python` the cluster's."""
    env = {**os.environ, "HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True,
                          timeout=PATIENCE_S)


@pytest.mark.parametrize("config", _probes())
@pytest.mark.timeout(3 * PATIENCE_S)
def test_the_readiness_probe_fails_ray_up_on_a_head_address_mlflow_refuses(head, config):
    home, port = head
    probe = _probes()[config]
    # The probe waits for the server to start, then gets its answer for the head's address.
    refused = _run_probe(probe, home, f"http://127.0.0.1:{port}")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert f"MLflow refuses http://127.0.0.1:{port}{PROBE_URL}: HTTP 403" in output, output
    assert "Invalid Host header" in output, output
    # ... and `ray up` shows the server's own log, which names the refused Host header.
    assert f"Rejected request with invalid Host header: 127.0.0.1:{port}" in output, output
    # What the probe used to ask: MLflow answers it for any Host, so it let the bug through.
    assert _health(f"http://127.0.0.1:{port}/health") == 200
    # The same server at an address it allows: the probe passes.
    allowed = _run_probe(probe, home, f"http://localhost:{port}")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_the_tracking_preflight_says_the_server_refused_and_what_to_allow(head):
    """The driver's own preflight meets the same 403 at once (no retries) and names the fix."""
    from byol_ray.core.config import ConfigError
    from byol_ray.runtime.tracking.store import check_tracking_store

    _, port = head
    uri = f"http://127.0.0.1:{port}"
    check_tracking_store(f"http://localhost:{port}", attempts=120)  # waits for the server
    with pytest.raises(ConfigError) as error:
        check_tracking_store(uri, attempts=30, timeout_s=5)
    message = str(error.value)
    assert f"the MLflow server at {uri} refused POST {uri}{PROBE_URL}: HTTP 403" in message
    assert "--allowed-hosts must list the host and port" in message
