"""`ray up` / `ray submit` / `ray down` of cluster/local.yaml, for real, on this machine.

The cluster is one head node at this machine's own network address (not loopback), as a user
would write it in `head_ip`: Ray advertises that address, MLflow listens on it, and the trials
reach MLflow through it, so the server's `--allowed-hosts` and `ray up`'s readiness probe are
exercised as on a real cluster (issue 13: on a head whose address MLflow did not allow, every
trial got 403 while `ray up` reported success). It is reached over SSH: an sshd that the test
starts on a free port of that address, in a PID namespace of its own, with its own HOME and Ray
temp folder. So the yaml's `ray stop` (and `ray down`'s) sees and stops only this cluster's Ray,
not other Ray instances on the machine, and stopping sshd ends every process the cluster started
(Ray, MLflow) even when the test fails. The yaml is used as written except for what points it at
this machine: the head's address and ports, SSH auth, and the checkout's virtual environment
instead of a new one. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from getpass import getuser
from pathlib import Path

import psutil
import pytest
import ray.util
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RELAY = Path(__file__).with_name("tcp_relay.py")
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "ray").exists() else (
    Path(sys.executable).parent
)
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
RAY_PORT_FLAGS = ("dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                  "ray-client-server-port", "metrics-export-port", "runtime-env-agent-port",
                  "node-manager-port", "object-manager-port")


@dataclass
class Node:
    """The SSH-reachable head node: where its sshd listens and what it keeps where."""

    address: str
    port: int
    key: Path
    home: Path
    ray_tmp: Path


def _machine_address() -> str:
    """The address Ray advertises for a node on this machine, as the yaml's head takes it: one
    of the machine's own non-loopback IPv4 addresses (skips the test on a machine with none)."""
    own = {
        addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs
        if addr.family == socket.AF_INET and not ipaddress.ip_address(addr.address).is_loopback
    }
    if not own:
        pytest.skip("this machine has no non-loopback IPv4 address for the head to advertise")
    picked = ray.util.get_node_ip_address()
    assert picked in own, f"Ray advertises {picked}, not one of this machine's addresses {own}"
    return picked


def _free_ports(n: int) -> list[int]:
    """Ports free on every address of the machine."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")


def _port_closed(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def ssh_node(tmp_path):
    """An sshd on the machine's address in its own PID namespace, logging root in with a
    fresh key."""
    if not Path(SSHD).exists() or not shutil.which("rsync"):
        pytest.skip("needs sshd and rsync: apt-get install openssh-server rsync")
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd logs in root, in a PID namespace of its own (unshare)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"sshd cannot get a PID namespace here: {probe.stderr.strip()}")
    address = _machine_address()
    # HOME and the Ray temp folder live under a short path: Ray's unix sockets go below it.
    node_dir = Path(tempfile.mkdtemp(prefix="byolray-"))
    home, ray_tmp = node_dir / "home", node_dir / "tmp"
    sshd = log = None
    try:
        home.mkdir()
        ray_tmp.mkdir()
        # The node's login shells start in its HOME (sshd starts them in root's real home).
        (home / ".bashrc").write_text('cd "$HOME"\n')
        for name in ("host_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / name],
                           check=True)
        (port,) = _free_ports(1)
        config = tmp_path / "sshd_config"
        config.write_text(f"""\
ListenAddress {address}
Port {port}
HostKey {tmp_path / "host_key"}
AuthorizedKeysFile {tmp_path / "id_ed25519.pub"}
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
SetEnv HOME={home} RAY_TMPDIR={ray_tmp} RAY_USAGE_STATS_ENABLED=0 \
DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
""")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        log = open(tmp_path / "sshd.log", "w")  # noqa: SIM115 - closed at teardown
        # --kill-child: when unshare ends, sshd (the namespace's init) is killed, and with it
        # every process in the namespace.
        sshd = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
             SSHD, "-D", "-e", "-f", config],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _wait_for_port(address, port, 20, sshd)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"sshd did not start ({error}): {(tmp_path / 'sshd.log').read_text()}")
        yield Node(address, port, tmp_path / "id_ed25519", home, ray_tmp)
    finally:
        if sshd is not None:
            _stop_namespace(sshd)
        if log is not None:
            log.close()
        server_log = home / "byol-ray-mlflow" / "server.log"
        if server_log.exists():  # kept for a post-mortem, beside the launcher's logs
            shutil.copy(server_log, tmp_path / "mlflow-server.log")
        shutil.rmtree(node_dir, ignore_errors=True)


def _stop_namespace(unshare: subprocess.Popen) -> None:
    """Kill sshd, the namespace's init: the kernel kills every process in the namespace, and
    unshare (which ignores SIGTERM) reaps sshd and exits."""
    try:
        for child in psutil.Process(unshare.pid).children():
            child.kill()
    except psutil.NoSuchProcess:
        pass
    try:
        unshare.wait(timeout=10)
    except subprocess.TimeoutExpired:
        unshare.kill()
        unshare.wait()


def _cluster_yaml(node: Node, tmp_path: Path, ray_port: int, mlflow_port: int) -> Path:
    """cluster/local.yaml pointed at the test's node: its address, free ports, this checkout."""
    text = (ROOT / "cluster" / "local.yaml").read_text()
    ports = zip(RAY_PORT_FLAGS, _free_ports(len(RAY_PORT_FLAGS)), strict=True)
    extra_ports = " ".join(f"--{flag}={port}" for flag, port in ports)
    for old, new in [
        ("BYOL_RAY_PORT=6379", f"BYOL_RAY_PORT={ray_port}"),
        ("BYOL_MLFLOW_PORT=5000", f"BYOL_MLFLOW_PORT={mlflow_port}"),
        ("$HOME/byol-ray-venv/bin", str(VENV_BIN)),
        # Ports that Ray would otherwise take at fixed defaults, shared with other Ray instances
        # on this machine; as the machine is shared, a small object store and no dashboard UI
        # (Ray's 30 s start-up deadline is tight on two busy cores).
        ("ray start --head", f"ray start --head {extra_ports} --include-dashboard=false "
                             "--object-store-memory=200000000"),
    ]:
        assert old in text, f"cluster/local.yaml no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    config = yaml.safe_load(text)
    config["cluster_name"] = f"byol-ray-test-{uuid.uuid4().hex[:8]}"
    config["provider"].update(head_ip=node.address, worker_ips=[])
    config["auth"] = {
        "ssh_user": "root",
        "ssh_private_key": str(node.key),
        "ssh_proxy_command": f"{sys.executable} {RELAY} {node.address} {node.port}",
    }
    # The last setup command writes the node's environment; the others create a virtual
    # environment and install the project, which the checkout's environment already has.
    config["setup_commands"] = config["setup_commands"][-1:]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _node_processes(node: Node) -> list[psutil.Process]:
    """The processes running on the test's node (those with its Ray temp folder)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAY_TMPDIR") == str(node.ray_tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _ssh_control_dir(cluster: Path) -> Path:
    """The folder of the launcher's SSH control sockets for this cluster (as Ray names it)."""
    name = yaml.safe_load(cluster.read_text())["cluster_name"]
    user, cluster_hash = (hashlib.sha256(s.encode()).hexdigest()[:10] for s in (getuser(), name))
    return Path(f"/tmp/ray_ssh_{user}/{cluster_hash}")


class Launcher:
    """Runs the `ray` cluster-launcher CLI from the repository root, one log per command."""

    def __init__(self, tmp_path: Path, node: Node):
        self.node = node
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        local_tmp = tmp_path / "launcher-tmp"
        local_tmp.mkdir()
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "RAY_TMPDIR": str(local_tmp),  # the local provider's cluster state file goes here
            "TMPDIR": str(local_tmp),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }

    def run(self, step: str, *args: str, timeout: float) -> tuple[int, str]:
        log = self.logs / f"{step}.log"
        start = time.monotonic()
        with open(log, "w") as out:
            try:
                code = subprocess.run(
                    [str(VENV_BIN / "ray"), *args], cwd=ROOT, env=self.env, stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
        print(f"ray {args[0]}: status {code} after {time.monotonic() - start:.0f} s")
        return code, log.read_text()

    def explain(self, output: str) -> str:
        """The end of a command's output and of the head's MLflow server log."""
        server_log = self.node.home / "byol-ray-mlflow" / "server.log"
        server = server_log.read_text()[-2000:] if server_log.exists() else "(none)"
        return f"{output[-6000:]}\n--- MLflow server log on the head:\n{server}"


def test_ray_up_submit_down_logs_the_sweep_to_the_head_nodes_mlflow(ssh_node, tmp_path,
                                                                    monkeypatch):
    head = ssh_node.address
    ray_port, mlflow_port = _free_ports(2)
    tracking_uri = f"http://{head}:{mlflow_port}"
    cluster = _cluster_yaml(ssh_node, tmp_path, ray_port, mlflow_port)
    launcher = Launcher(tmp_path, ssh_node)
    try:
        code, out = launcher.run("up", "up", "-y", str(cluster), timeout=240)
        assert code == 0, launcher.explain(out)
        # The yaml took the head's address from Ray, and its MLflow server listens there only.
        env = (ssh_node.home / "byol-ray.env").read_text()
        assert f"BYOL_RAY_HEAD={head} " in env, env
        assert _port_closed("127.0.0.1", mlflow_port, 0.1), "MLflow listens on 127.0.0.1 too"

        # A sweep that this cluster can never hold stops at once, naming what it lacks.
        code, out = launcher.run(
            "submit-too-big", "submit", str(cluster), "sweeps/batch_size.py", "--preset",
            "cpu-mini", "--only", "random-init", "--set", "scaling.num_workers=64", timeout=90,
        )
        assert code != 0 and "error: scaling.num_workers" in out, launcher.explain(out)

        # What a user types, the glob quoted once more for the head's shell (`ray submit` joins
        # the script's arguments into one command line).
        code, out = launcher.run(
            "submit", "submit", str(cluster), "sweeps/batch_size.py", "--preset", "cpu-mini",
            "--only", "'random-init*'", "--set", "train.epochs=1", timeout=240,
        )
        assert code == 0, launcher.explain(out)
        assert f"joined the Ray cluster at {head}:{ray_port}" in out, launcher.explain(out)

        # MLflow asks for a user's password (issue 33): the read-only one `ray up` made.
        store = ssh_node.home / "byol-ray-mlflow"
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", (store / "reader.pw").read_text().strip())
        client = MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name("batch_size/cpu-mini")
        assert experiment is not None, "no batch_size/cpu-mini experiment on the head's MLflow"
        runs = client.search_runs([experiment.experiment_id])
        sweeps = [run for run in runs if run.data.tags.get("role") == "sweep"]
        trials = [run for run in runs if run.data.tags.get("role") == "trial"]
        assert len(sweeps) == 1 and len(trials) == 1 and len(runs) == 2, runs
        sweep, trial = sweeps[0], trials[0]
        assert sweep.info.status == "FINISHED" and sweep.data.tags["failed_trials"] == "0"
        assert trial.info.status == "FINISHED", trial.data.tags.get("failure_reason")
        assert trial.data.tags["trial"] == "random-init"
        assert trial.data.tags["mlflow.parentRunId"] == sweep.info.run_id
        assert trial.data.params["train.epochs"] == "1"
        assert "eval/knn_top1" in trial.data.metrics  # logged by the Ray Train worker
        artifacts = [a.path for a in client.list_artifacts(trial.info.run_id)]
        assert artifacts == ["config.yaml", "weights"]  # the encoder too, even untrained
        # The server is the yaml's: its SQLite database and artifacts on the head's disk.
        store = ssh_node.home / "byol-ray-mlflow"
        assert (store / "mlflow.db").is_file()
        assert list((store / "artifacts").rglob("config.yaml"))
        # Every call, the trials' included, came with a Host header the server allows.
        assert "invalid Host header" not in (store / "server.log").read_text()

        # Ray's worker processes inherit the address from the raylet, started by the yaml.
        raylets = [proc for proc in _node_processes(ssh_node) if proc.name() == "raylet"]
        assert len(raylets) == 1, raylets
        assert raylets[0].environ()["MLFLOW_TRACKING_URI"] == tracking_uri
        assert raylets[0].environ()["RAY_AUTH_MODE"] == "token"  # the head's token required
    finally:
        code, out = launcher.run("down", "down", "-y", str(cluster), timeout=90)
        shutil.rmtree(_ssh_control_dir(cluster), ignore_errors=True)
    assert code == 0, launcher.explain(out)
    assert _port_closed(head, ray_port, 20), "Ray's GCS still listens after `ray down`"
