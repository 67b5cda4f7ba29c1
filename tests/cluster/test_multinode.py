"""A sweep on a Ray cluster of two nodes on this machine, with its storage in a real S3 API.

The head (127.0.0.1, which Ray advertises as this machine's own address) and a worker node
(127.0.0.2) are two `ray start` processes of the test's own, each with its own raylet, object
store and one CPU, so a trial of two one-CPU Train workers spans both; its batch norm takes the
statistics of the whole 256-image batch across the two nodes (`data.group_size=256`: the CPU's
counterpart of SyncBN, `GroupBatchNorm` over gloo), as SyncBN does on GPUs. Checkpoints go to a
moto S3 server on 127.0.0.1 (`--storage s3://...?endpoint_override=...`), MLflow's artifacts
through a tracking server to the same S3, its runs in PostgreSQL (Debian's server, started by
the test as the unprivileged `postgres` user), as cluster/gpu.yaml's head keeps them. Nothing
talks to the real AWS: every process gets dummy settings, instance metadata off and the
endpoint explicitly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import boto3
import pytest
import ray
import yaml
from console_lines import Lines
from local_servers import (
    NO_REAL_AWS,
    S3,
    MlflowServer,
    Postgres,
    free_ports,
    kill_session,
    moto_s3,
    ray_node,
)
from mlflow.tracking import MlflowClient

from byol_ray.cli.main import main as byol_ray_main
from byol_ray.cli.sweep import load_grid, run_sweep_cli
from byol_ray.core.config import ConfigError
from byol_ray.jobs.sweep.run import HEAD_RESOURCE
from byol_ray.runtime.cluster import connect
from byol_ray.runtime.storage import check_storage, join

ROOT = Path(__file__).resolve().parents[2]
WORKER_IP = "127.0.0.2"
TRIAL = "byol-tau_base=0.99-s0"
EPOCHS = 10
# One trial of two Train workers of one CPU each: on nodes of one CPU, one worker per node; one
# BN group of the whole batch of 256, so batch statistics cross the nodes.
SPANNING = ("--only", TRIAL, "--set", "scaling.num_workers=2", "--set", "scaling.cpus_per_worker=1",
            "--set", "data.batch_size=256", "--set", "data.group_size=256",
            "--set", f"train.epochs={EPOCHS}", "--set", "train.checkpoint_every=2",
            "--set", "scaling.max_failures=2")


class Cluster:
    """Two Ray nodes of one CPU each; the head holds HEAD_RESOURCE (as cluster/*.yaml give
    it), so trial drivers stay there."""

    def __init__(self, stack: ExitStack, env: dict[str, str]):
        self.stack, self.env = stack, env
        self.head = stack.enter_context(ray_node(num_cpus=1, resources={HEAD_RESOURCE: 1000},
                                                 env=env))
        self.address = self.head.address
        self.worker = self.add_node(WORKER_IP)

    def add_node(self, ip: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """One more node of one CPU at `ip` (its processes get `env`, default the cluster's),
        stopped with the module's cluster unless killed before."""
        return self.stack.enter_context(ray_node(self.address, ip=ip, num_cpus=1,
                                                 env=env or self.env))


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3]:
    with moto_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3) -> Iterator[Cluster]:
    """The two nodes, their processes holding the S3 key; this test process joins as a Ray
    driver (to read the actor table) and leaves before the nodes stop."""
    with ExitStack() as stack:
        nodes = Cluster(stack, {**os.environ, **s3.env})
        connect(nodes.address)
        try:
            yield nodes
        finally:
            ray.shutdown()


def _alive_ips() -> set[str]:
    return {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}


def _wait_until_gone(ip: str, timeout: float = 180) -> None:
    """Until Ray's GCS has noticed that the node at `ip` is lost (its health checks failed)."""
    deadline = time.monotonic() + timeout
    while ip in _alive_ips():
        assert time.monotonic() < deadline, f"Ray still lists the stopped node {ip}"
        time.sleep(0.5)


# ------------------------------------------------------------ bad storage stops before training


def _sweep_exits_2(tmp_path: Path, capsys, storage: str, address: str) -> str:
    """The ema_decay sweep run in this process with `storage`: it must exit 2 before any
    MLflow run exists; returns its one error line."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = run_sweep_cli(load_grid("ema_decay"), [
        "--preset", "cpu-mini", *SPANNING, "--tracking-uri", uri, "--storage", storage,
        "--address", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert MlflowClient(uri).get_experiment_by_name("ema_decay/cpu-mini") is None
    return err[-1]


@pytest.mark.slow
def test_storage_the_nodes_cannot_share_or_reach_stops_before_training_naming_it(
        cluster, s3, tmp_path, capsys, monkeypatch):
    """Exit 2 with one line naming the setting, before any run starts: a local --storage on
    two nodes (each would keep its own folder), an unknown bucket, refused credentials, an
    unreachable endpoint, the endpoint given only as AWS_ENDPOINT_URL (pyarrow would ask the
    real AWS for the bucket's region), and credentials that only the driver has (checked from
    a Ray task on each node: the workers there write the checkpoints)."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    sweep = "sweeps/ema_decay.py: error: "
    local = tmp_path / "ray"
    line = _sweep_exits_2(tmp_path, capsys, str(local), cluster.address)
    assert line.startswith(f"{sweep}--storage: {local} is a folder on each node's own disk ")
    assert "the Ray cluster has 2 nodes" in line and "use s3://" in line
    assert byol_ray_main(["train", "--preset", "cpu-mini", "--storage", str(local),
                          "--tracking-uri", f"sqlite:///{tmp_path / 'train.db'}",
                          "--address", cluster.address]) == 2  # one run: the same check
    assert f"--storage: {local} is a folder" in capsys.readouterr().err

    line = _sweep_exits_2(tmp_path, capsys, s3.uri("ray", bucket="no-such-bucket"),
                          cluster.address)
    assert line.startswith(f"{sweep}--storage: bucket 'no-such-bucket' does not exist at "
                           f"{s3.endpoint} "), line

    wrong_key = s3.uri("ray").replace("s3://", "s3://NOTAKEY:wrong@")
    line = _sweep_exits_2(tmp_path, capsys, wrong_key, cluster.address)
    assert line.startswith(f"{sweep}--storage: the S3 endpoint at {s3.endpoint} refused the "
                           "credentials of node "), line

    closed = f"127.0.0.1:{free_ports(1)[0]}"
    line = _sweep_exits_2(tmp_path, capsys, s3.uri("ray", endpoint=closed), cluster.address)
    assert line.startswith(f"{sweep}--storage: no S3 endpoint answers at {closed}; "), line

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3.endpoint}")
    line = _sweep_exits_2(tmp_path, capsys, f"s3://{s3.bucket}/ray", cluster.address)
    assert line == (f"{sweep}--storage: s3://{s3.bucket}/ray names no endpoint, but "
                    "AWS_ENDPOINT_URL is set: Ray's storage (pyarrow) does not read it and "
                    "would ask AWS for the bucket's region; give the endpoint in the URI: "
                    f"{s3.uri('ray')}")
    monkeypatch.delenv("AWS_ENDPOINT_URL")

    # A third node whose Ray processes have no AWS key, while this driver has one.
    keyless = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | NO_REAL_AWS
    third = cluster.add_node("127.0.0.3", env=keyless)
    try:
        line = _sweep_exits_2(tmp_path, capsys, s3.uri("ray"), cluster.address)
        assert line.startswith(f"{sweep}AWS_ACCESS_KEY_ID: set for this driver but not for the "
                               "Ray processes of node 127.0.0.3, which write the checkpoints"), line
    finally:
        kill_session(third)
        _wait_until_gone("127.0.0.3")  # the next test's storage check must not wait on it
    assert _alive_ips() == {ray.util.get_node_ip_address(), WORKER_IP}


# ------------------------------------------------------------ a trial spanning both nodes


def _registered_epoch(s3: S3, trial: str) -> int | None:
    """The epoch of the latest checkpoint Ray Train's controller registered for `trial` (its
    snapshot object in S3: what a restarted worker group continues from), None before."""
    client = boto3.client("s3", endpoint_url=f"http://{s3.endpoint}", region_name="us-east-1",
                          aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3.env["AWS_SECRET_ACCESS_KEY"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="ray/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith(f"/{trial}/checkpoint_manager_snapshot.json"):
                body = client.get_object(Bucket=s3.bucket, Key=item["Key"])["Body"].read()
                latest = json.loads(body).get("latest_checkpoint_result")
                return int(latest["metrics"]["epoch"]) if latest else None
    return None


def _actors(class_name: str) -> list[dict]:
    """Every actor of `class_name` the cluster has had (this cluster runs only this sweep)."""
    from ray._private.state import actors

    return [a for a in actors().values() if a["ActorClassName"].endswith(class_name)]


@pytest.fixture
def pg(mlflow_pg) -> Postgres:
    """MLflow's schema over PostgreSQL, this test's own database (tests/conftest.py)."""
    return mlflow_pg


@pytest.fixture
def mlflow_s3(s3, pg, tmp_path) -> Iterator[MlflowServer]:
    """A tracking server over PostgreSQL whose artifacts go to the bucket
    (`--artifacts-destination s3://`)."""
    with MlflowServer(tmp_path, artifacts=f"s3://{s3.bucket}/mlflow", pg=pg,
                      env={**s3.env, "MLFLOW_S3_ENDPOINT_URL": f"http://{s3.endpoint}"}
                      ) as server:
        yield server


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two Ray nodes, MLflow over PostgreSQL, a node lost and restarted
def test_a_trial_spans_two_nodes_and_continues_from_s3_after_losing_one(cluster, s3, pg, mlflow_s3,
                                                                        tmp_path, monkeypatch):
    """One sweep trial of two Train workers, one on each node (DDP over gloo between them),
    checkpoints in S3. Once Ray registered a checkpoint there, every process of the worker
    node is SIGKILLed (its session: a lost machine); the node comes back at the same address
    and the trial continues from that checkpoint, under the same child run and the same trial
    driver and Train controller (both on the head: a worker node's loss never kills them),
    every epoch's metrics once. The sweep ends FINISHED, its runs in the server's PostgreSQL;
    the run's weights and config went to S3 through the tracking server, and
    `byol_ray.load_encoder` reads the weights back."""
    server, started = mlflow_s3, time.monotonic()
    sweep = None
    try:
        sweep = subprocess.Popen(
            [sys.executable, str(ROOT / "sweeps" / "ema_decay.py"), "--preset", "cpu-mini",
             *SPANNING, "--tracking-uri", server.uri, "--storage", s3.uri("ray"),
             "--address", cluster.address],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
            env={**os.environ, **s3.env, "PYTHONUNBUFFERED": "1"})
        console = Lines(sweep)
        registered = console.wait_until("checkpoint registered in S3",
                                        lambda: _registered_epoch(s3, TRIAL))
        workers = [a for a in _actors("RayTrainWorker") if a["State"] == "ALIVE"]
        drivers = _actors("ImplicitFunc") + _actors("TrainController")
        head_node = next(n["NodeID"] for n in ray.nodes()
                         if n["Alive"] and n["NodeManagerAddress"] != WORKER_IP)
        assert len(workers) == 2 and {w["Address"]["IPAddress"] for w in workers} == {
            ray.util.get_node_ip_address(), WORKER_IP}, workers
        assert len(drivers) == 2 and {d["Address"]["NodeID"] for d in drivers} == {head_node}

        kill_session(cluster.worker)  # the worker node is lost, its Train worker with it
        _wait_until_gone(WORKER_IP)
        cluster.worker = cluster.add_node(WORKER_IP)  # and comes back at the same address
        assert sweep.wait(timeout=900) == 0, console.text()[-5000:]
    finally:
        if sweep and sweep.poll() is None:
            kill_session(sweep)
    out = console.text()
    print(f"two-node sweep with a lost node: {time.monotonic() - started:.0f} s")

    resumed = [int(e) for e in re.findall(r"resumed from checkpoint after epoch (\d+)", out)]
    assert resumed and all(registered <= epoch < EPOCHS for epoch in resumed), out[-5000:]
    assert [d["ActorID"] for d in _actors("ImplicitFunc") + _actors("TrainController")] == [
        d["ActorID"] for d in drivers], "a trial driver or Train controller was replaced"

    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("ema_decay/cpu-mini")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("role") == "sweep"]
    [child] = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert parent.info.status == "FINISHED" and parent.data.tags["failed_trials"] == "0"
    assert child.info.status == "FINISHED" and child.data.tags["trial"] == TRIAL
    assert child.data.params["scaling.num_workers"] == "2"
    assert child.data.params["data.group_size"] == "256"
    for name, first in (("train/loss", 1), ("epoch", 0)):
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, name))
        assert steps == list(range(first, EPOCHS + 1)), (name, steps)
    assert {row[0] for row in pg.query("SELECT run_uuid FROM runs")} == {
        parent.info.run_id, child.info.run_id}

    stored = boto3.client("s3", endpoint_url=f"http://{s3.endpoint}", region_name="us-east-1",
                          aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3.env["AWS_SECRET_ACCESS_KEY"],
                          ).list_objects_v2(Bucket=s3.bucket, Prefix="mlflow/")
    keys = [item["Key"] for item in stored.get("Contents", [])]
    assert any(k.endswith(f"{child.info.run_id}/artifacts/config.yaml") for k in keys), keys
    assert any(f"{child.info.run_id}/artifacts/weights/" in k for k in keys), keys
    import byol_ray  # through the server: this process has no S3 key

    assert not os.environ.get("AWS_ACCESS_KEY_ID")
    # MLflow's client would fetch the files from S3 itself through URLs the server presigns
    # (moto refuses those once its authentication is on); this makes it ask the server for them.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")

    encoder = byol_ray.load_encoder(f"runs:/{child.info.run_id}/weights", server.uri)
    assert sum(p.numel() for p in encoder.parameters()) > 0


def test_the_head_of_every_cluster_config_holds_the_trial_drivers_resource():
    """Trial drivers ask for HEAD_RESOURCE where the cluster has it: every config's head has
    it (the launcher's `ray start --head`, the autoscaler's head type, KubeRay's head group)."""
    flag = f"--resources='{{\"{HEAD_RESOURCE}\": 1000}}'"
    for name in ("gpu.yaml", "local.yaml"):
        config = yaml.safe_load((ROOT / "cluster" / name).read_text())
        [start] = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
        assert flag in start, (name, start)
    gpu = yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())
    assert gpu["available_node_types"][gpu["head_node_type"]]["resources"][HEAD_RESOURCE] > 0
    job = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob-batch-size.yaml").read_text())
    params = job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    assert json.loads(json.loads(params["resources"]))[HEAD_RESOURCE] > 0


def test_storage_uri_options_stay_last_and_an_endpoint_only_in_the_environment_is_refused(
        monkeypatch, tmp_path):
    """Paths joined under an S3 `--storage` keep pyarrow's options at the end; an endpoint
    given only as AWS_ENDPOINT_URL is refused before any node is asked, with the URI to use;
    a folder on a cluster of one node is not checked at all."""
    storage = "s3://bucket/ray?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join(storage, "sweep-1234") == (
        "s3://bucket/ray/sweep-1234?endpoint_override=127.0.0.1:9000&scheme=http")
    assert join(str(tmp_path) + "/", "a", "b") == f"{tmp_path}/a/b"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    with pytest.raises(ConfigError) as error:
        check_storage("s3://bucket/ray?region=eu-west-1", nodes=[])
    assert error.value.field == "--storage" and error.value.message.endswith(
        "s3://bucket/ray?region=eu-west-1&endpoint_override=127.0.0.1:9000&scheme=http")
    nodes = [{"NodeID": "n", "NodeManagerAddress": "10.0.0.1", "Alive": True},
             {"NodeID": "m", "NodeManagerAddress": "10.0.0.2", "Alive": False}]  # one alive
    check_storage(str(tmp_path), nodes)
