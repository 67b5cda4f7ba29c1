"""Servers a test starts as processes of its own and ends by their session, never by name.

`ray_node` runs `ray start --block` (a head, or a node joining one) in a session of its own:
every process of that node (GCS, raylet, dashboard agent, the Tune and Train workers it runs)
is in it, and `kill_session` SIGKILLs exactly those, as a lost machine or `ray stop --force`
would, without touching other Ray clusters on this shared machine (`ray stop` kills every Ray
process of the user, found by name). `MlflowServer` is a real tracking server (over a sqlite
file, or over `postgres`: Debian's PostgreSQL server, run as the unprivileged `postgres` user
in a temporary folder) and `moto_s3` a real S3 API, all on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
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
from dataclasses import dataclass, replace
from pathlib import Path

from byol_ray.core.config import ConfigError
from byol_ray.runtime.tracking.store import check_tracking_store

BIN = Path(sys.executable).parent
# How long a server of a test may take to start: seconds when idle, minutes on the loaded 2-core
# machine (load 10-30), where its imports alone are slow. Each wait also fails at once when
# the server's process ends.
START_PATIENCE_S = 600
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
        # Started once it says so and (a head) has written its address: `ray start` prints the
        # line first, so on a loaded machine the file can come seconds later.
        recorded = folder / "ray_current_cluster"
        deadline = time.monotonic() + START_PATIENCE_S
        while ("Ray runtime started" not in log.read_text()
               or (head is None and not (recorded.is_file() and recorded.read_text().strip()))):
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        node.address = head or recorded.read_text().strip()
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


def paused_pid(proc: subprocess.Popen, marker: Path, point: str, timeout_s: float) -> int:
    """The pid a process of `proc`'s (itself or a Ray worker) wrote to `marker` on reaching
    pause point `point` (byol_ray/runtime/pause_points.py); fails if `proc` ends first or
    `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        assert time.monotonic() < deadline, f"no process reached {point!r}"
        time.sleep(0.2)
    return int(marker.read_text())


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
        deadline = time.monotonic() + START_PATIENCE_S
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=10).close()
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


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them in /usr/lib/postgresql/VERSION/bin (the
    newest version installed), not on PATH. Fails naming the package when there is none."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parts[-3].split(".") if part.isdigit())

    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=version)
    if found:
        return str(found[-1])
    if path := shutil.which(name):
        return path
    raise FileNotFoundError(f"{name}: no PostgreSQL server here; install Debian's package "
                            "(apt-get install postgresql, as .ci/run does)")


UNPRIVILEGED = "postgres"  # the user Debian's package creates; PostgreSQL refuses to run as root


def unprivileged_folder(prefix: str) -> tuple[Path, list[str]]:
    """A new folder for PostgreSQL's files and the command prefix that runs a program as its
    owner: when we are root, the `postgres` user (through `runuser`), else ourselves. It is
    made in a folder of its own under the system's temporary folder (not under pytest's,
    which only root may pass), which the caller removes: shutil.rmtree(folder.parent)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    folder = base / "pg"
    folder.mkdir(mode=0o700)
    if os.geteuid() != 0:
        return folder, []
    os.chmod(base, 0o711)  # `postgres` may pass through to its own folder, nothing more
    owner = pwd.getpwnam(UNPRIVILEGED)
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return folder, ["runuser", "-u", UNPRIVILEGED, "--"]


@dataclass
class Postgres:
    """A PostgreSQL server on 127.0.0.1 with password (scram-sha-256) authentication: a role
    and a database `mlflow`. Its password is only in `passfile` (libpq's ~/.pgpass format,
    0600), which a client finds through PGPASSFILE (`env`): never in a URI or a command line."""

    port: int
    password: str
    passfile: Path
    log: Path  # the server's own log
    user: str = "mlflow"
    database: str = "mlflow"

    @property
    def uri(self) -> str:
        """SQLAlchemy's URI for MLflow's --backend-store-uri (psycopg 3), without a password."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.passfile)}

    def copy(self, database: str) -> Postgres:
        """A new database `database` on this server, a copy of this one (CREATE DATABASE ...
        TEMPLATE: a file copy, milliseconds, where MLflow's migrations take minutes on a
        loaded machine). Nothing may be connected to this database meanwhile."""
        _setup([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                "-T", self.database, database],
               env={**os.environ, **self.env, "PGCONNECT_TIMEOUT": "30"})
        return replace(self, database=database)

    def query(self, sql: str) -> list[tuple]:
        """The rows of one SQL statement in the database (psycopg, logging in with the
        passfile): what MLflow really stored there."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname=self.database, passfile=str(self.passfile),
                             connect_timeout=30) as connection:
            return connection.execute(sql).fetchall()


@contextmanager
def postgres(max_connections: int = 300) -> Iterator[Postgres]:
    """Debian's PostgreSQL server on a free port of 127.0.0.1, in a temporary folder of its
    own, run as the `postgres` user when we are root (initdb refuses root), password
    authentication only, a fresh database `mlflow`; ready once `pg_isready` says so and the
    password logs in (createdb). Stopped on leaving (fast shutdown, then its session killed),
    its folder removed."""
    folder, as_user = unprivileged_folder("byol-ray-pg-")
    base, passfile = folder.parent, folder.parent / "pgpass"
    password, port = secrets.token_urlsafe(24), free_ports(1)[0]
    pwfile = folder / "initdb-password"  # initdb reads the superuser's password from a file
    server = None
    try:
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if as_user:
            owner = pwd.getpwnam(UNPRIVILEGED)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        _setup([*as_user, pg_bin("initdb"), "-D", str(folder / "data"), "-U", "mlflow",
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C",
                "--no-sync"])
        pwfile.unlink()
        passfile.write_text(f"127.0.0.1:{port}:*:mlflow:{password}\n")
        os.chmod(passfile, 0o600)  # libpq ignores a passfile others may read
        log = folder / "postgres.log"
        with open(log, "wb") as out:  # the server keeps its own descriptor
            server = subprocess.Popen(
                [*as_user, pg_bin("postgres"), "-D", str(folder / "data"), "-h", "127.0.0.1",
                 "-p", str(port), "-k", str(folder), "-c", f"max_connections={max_connections}"],
                stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        deadline = time.monotonic() + START_PATIENCE_S
        while subprocess.run([pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                             check=False).returncode:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        pg = Postgres(port, password, passfile, log)
        _setup([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow",
                "mlflow"], env={**os.environ, **pg.env, "PGCONNECT_TIMEOUT": "30"})
        yield pg
    finally:
        if server is not None:
            _stop_postgres(server)
        shutil.rmtree(base, ignore_errors=True)


def _setup(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run a set-up command; fail with its own words."""
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {(done.stderr or done.stdout).strip()}")


def _stop_postgres(server: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: sessions ended, shared memory released), then whatever of its
    session is left is killed."""
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        server.wait(timeout=60)
    kill_session(server)


# MLflow 3's server (and `mlflow ui`) also starts a job runner and eight huey consumers, for
# GenAI jobs byol-ray never submits: ~2 GB and ~15-25 CPU-seconds a start, minutes of the
# suite's time. Off, as the cluster configs run it (cluster/gpu.yaml).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 over a store that outlives its restarts: a sqlite
    file in `folder`, or the database of `pg` (from `postgres()`; its password reaches the
    server through PGPASSFILE in the environment, never its command line); artifacts in `artifacts`
    (default: a folder beside the store; or s3://..., reached with the S3 settings in `env`).
    `workers` and `uvicorn_opts` as `mlflow server` takes them (cluster/gpu.yaml: 2 and a 60 s
    health check). A context manager: started on entering, stopped on leaving."""

    def __init__(self, folder: Path, artifacts: str = "", env: dict[str, str] | None = None,
                 pg: Postgres | None = None, workers: int = 1, uvicorn_opts: str = ""):
        self.folder, self.proc = folder, None
        self.workers, self.uvicorn_opts = workers, uvicorn_opts
        self.env = {**MLFLOW_SERVER_ENV, **(env or {}), **(pg.env if pg else {})}
        self.backend = pg.uri if pg else f"sqlite:///{folder / 'mlflow.db'}"
        self.artifacts = artifacts or str(folder / "artifacts")
        self.port = free_ports(1)[0]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"

    def start(self, timeout_s: float = START_PATIENCE_S) -> None:
        """Start it; return once a real API call answers. The first start over an empty
        database creates MLflow's tables first: seconds on an idle machine, over 4 minutes
        over PostgreSQL on the loaded 2-core one."""
        log = self.log.open("a")
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers),
             *(["--uvicorn-opts", self.uvicorn_opts] if self.uvicorn_opts else []),
             "--backend-store-uri", self.backend, "--artifacts-destination", self.artifacts],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:  # one quick API call (MLflow's client would retry for minutes)
                check_tracking_store(self.uri, attempts=1, timeout_s=2)
                return
            except ConfigError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server did not start; its log ends:\n"
                           f"{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM to its process group (uvicorn's workers end their requests), then whatever
        of its session is left is killed: `mlflow server` itself may outlive its workers,
        waiting on the job consumers it started (MLflow 3)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        kill_session(self.proc)

    def __enter__(self) -> MlflowServer:
        try:
            self.start()
        except BaseException:  # a start that timed out or was interrupted leaves nothing behind
            self.stop()
            raise
        return self

    def __exit__(self, *_) -> None:
        self.stop()
