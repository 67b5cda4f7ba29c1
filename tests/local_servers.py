"""Servers a test starts as processes of its own and ends by their session, never by name.

`ray_node` runs `ray start --block` (a head, or a node joining one) in a session of its own:
every process of that node (GCS, raylet, dashboard agent, the Tune and Train workers it runs)
is in it, and `kill_session` SIGKILLs exactly those, as a lost machine or `ray stop --force`
would, without touching other Ray clusters on this shared machine (`ray stop` kills every Ray
process of the user, found by name). `MlflowServer` is a real tracking server and `moto_s3`
a real S3 API, both on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from byol_ray.core.config import ConfigError
from byol_ray.runtime.tracking.store import check_tracking_store

BIN = Path(sys.executable).parent
# Ray's ports that default to fixed numbers, shared with other Ray clusters on this machine;
# the first three only a head opens.
RAY_PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port",
                  "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                  "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
                  "object-manager-port")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` ports nothing listens on now (bound together, so all different)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind((host, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextmanager
def ray_node(head: str | None = None, ip: str = "127.0.0.1", num_cpus: int = 2,
             resources: dict[str, float] | None = None,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`ray start --block` of this test's own at `ip` (free ports, its own temp dir, in a
    session of its own): a head, or with `head` (the GCS address) a node joining it. Yields
    the `ray start` process; `.address` is the cluster's GCS address. On leaving, every
    process of the node is SIGKILLed (`kill_session`)."""
    folder = Path(tempfile.mkdtemp(prefix="byol-ray-node-")) / "ray"  # short: Ray's socket paths
    flags = RAY_PORT_FLAGS if head is None else RAY_PORT_FLAGS[3:]
    ports = free_ports(len(flags), ip)
    log = folder.parent / "ray-start.log"
    env = {**(os.environ if env is None else env), "PATH": f"{BIN}:{os.environ['PATH']}"}
    if head is not None and "RAY_AUTH_MODE" not in env and _has_auth_token():
        env["RAY_AUTH_MODE"] = "token"  # as `ray start --head` turned it on (2.60: heads only)
    node = subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", f"--temp-dir={folder}", f"--num-cpus={num_cpus}",
         f"--node-ip-address={ip}", "--object-store-memory=200000000",
         *(["--head", "--include-dashboard=false"] if head is None else [f"--address={head}"]),
         *([f"--resources={json.dumps(resources)}"] if resources else []),
         *(f"--{flag}={port}" for flag, port in zip(flags, ports, strict=True))],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        cwd=folder.parent, env=env)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        node.address = head or (folder / "ray_current_cluster").read_text().strip()
        yield node
    finally:
        kill_session(node)
        shutil.rmtree(folder.parent, ignore_errors=True)


def _has_auth_token() -> bool:
    """Whether Ray finds a token here (~/.ray/auth_token, ...): a head started with one
    requires it from every node and driver."""
    from ray._private.authentication.authentication_token_setup import (
        AuthenticationTokenLoader,
    )

    return AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)


def kill_session(leader: subprocess.Popen) -> None:
    """SIGKILL every process of the session `leader` leads (started with start_new_session):
    the driver or `ray start`, the Ray node it runs (GCS, raylet) and the Ray workers, which
    raylet puts in process groups of their own (a `killpg` leaves them training for seconds).
    Returns once none of them is left alive."""
    deadline = time.monotonic() + 60
    while alive := session_members(leader.pid):
        assert time.monotonic() < deadline, f"still alive: {alive}"
        for pid in alive:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    leader.wait(timeout=60)


def session_members(session: int) -> list[int]:
    """The live (not zombie) processes of a session, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            state, _, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
            if state != "Z" and int(sid) == session:
                members.append(int(stat.parent.name))
    return members


@dataclass
class S3:
    """A moto S3 server: its endpoint, a bucket, and the only credentials it accepts."""

    endpoint: str  # host:port
    bucket: str
    env: dict[str, str]  # AWS_* for a process that may use the bucket; never the real AWS

    def uri(self, prefix: str, bucket: str = "", endpoint: str = "") -> str:
        """`--storage` for `prefix` in the bucket, the endpoint in pyarrow's URI options."""
        return (f"s3://{bucket or self.bucket}/{prefix}?endpoint_override="
                f"{endpoint or self.endpoint}&scheme=http")


# Any process of a test that could reach for AWS: no instance metadata, no real endpoint.
NO_REAL_AWS = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


@contextmanager
def moto_s3(folder: Path, bucket: str = "byol-ray") -> Iterator[S3]:
    """`moto_server` on a free port of 127.0.0.1 holding `bucket`, that (like S3) refuses
    requests without a key it issued: an IAM user with one access key is made, then moto's
    authentication is switched on."""
    import boto3

    port = free_ports(1)[0]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=(folder / "moto.log").open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    (folder / "moto.log").read_text())
                time.sleep(0.2)
        session = boto3.session.Session(aws_access_key_id="setup", region_name="us-east-1",
                                        aws_secret_access_key="setup")
        session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        iam = session.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="byol-ray")
        iam.put_user_policy(UserName="byol-ray", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="byol-ray")["AccessKey"]
        urllib.request.urlopen(urllib.request.Request(  # from now on, only that key
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"}), timeout=10).close()
        yield S3(f"127.0.0.1:{port}", bucket, {
            **NO_REAL_AWS, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        kill_session(server)


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 over a sqlite store that outlives its restarts;
    artifacts in `artifacts` (default: a folder beside the store; or s3://..., reached with
    the S3 settings in `env`)."""

    def __init__(self, folder: Path, artifacts: str = "", env: dict[str, str] | None = None):
        self.folder, self.proc, self.env = folder, None, env
        self.artifacts = artifacts or str(folder / "artifacts")
        self.port = free_ports(1)[0]
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.folder / "server.log").open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", self.artifacts],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=None if self.env is None else {**os.environ, **self.env})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:  # one quick API call (MLflow's client would retry for minutes)
                check_tracking_store(self.uri, attempts=1, timeout_s=2)
                return
            except ConfigError:
                time.sleep(0.5)
        raise TimeoutError("mlflow server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
