"""Faults injected for real through the `byol-ray` command: each test names its guarantee
(see docs/reliability.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from console_lines import PATIENCE_S, Lines
from local_servers import MlflowServer
from mlflow.tracking import MlflowClient


def byol_ray(*args: str, cwd=None, timeout: float = 500, env=None) -> subprocess.CompletedProcess:
    """`byol-ray ARGS` in a fresh Python process, as a user runs it (for commands that start
    Ray; the others run in-process through the `cli` fixture)."""
    return subprocess.run([sys.executable, "-m", "byol_ray.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def closed_port():
    """A port bound on 127.0.0.1 but never listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ---------------------------------------------------------------- 1. tracking server unreachable


@pytest.mark.parametrize("command", [("train",), ("sweep", "ema_decay")])
def test_unreachable_tracking_server_exits_2_naming_the_uri_before_ray_starts(
        command, closed_port, tmp_path, cli):
    uri = f"http://127.0.0.1:{closed_port}"
    proc = cli(*command, "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert uri in lines[0] and "experiments/search" in lines[0] and "refused" in lines[0]
    assert "Ray" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("uri", ["htp:/bad", "htp://bad", "http:/127.0.0.1:5000"])
def test_malformed_tracking_uri_exits_2_naming_it(uri, tmp_path, cli):
    proc = cli("train", "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (f"byol-ray: error: --tracking-uri: {uri!r} is not a tracking "
                                   "URI; use http(s)://HOST:PORT, sqlite:///PATH.db or a folder")
    assert not list(tmp_path.iterdir()), "nothing may be created"


def test_sqlite_store_where_no_folder_can_be_made_exits_2(tmp_path, cli):
    (tmp_path / "a_file").write_text("")
    uri = f"sqlite:///{tmp_path}/a_file/mlflow.db"
    proc = cli("train", "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{tmp_path}/a_file is not a writable folder" in proc.stderr


def test_sqlite_store_in_a_missing_folder_exits_2_and_makes_no_folder(tmp_path):
    """A typo in the store's path names the folder instead of creating it and training."""
    uri = f"sqlite:///{tmp_path}/typo/dir/mlflow.db"
    proc = byol_ray("train", "--preset", "cpu-mini", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (f"byol-ray: error: --tracking-uri: {uri}: the folder "
                                   f"{tmp_path}/typo/dir does not exist; create it, or fix the "
                                   "path")
    assert not (tmp_path / "typo").exists()


# ---------------------------------------------------------------- 7. bad input


def test_cifar_files_failing_torchvisions_md5_check_exit_2_before_ray_starts(tmp_path, cli):
    """Every file torchvision reads exists, but holds the wrong bytes (a broken download)."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    for name, _ in [*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], "")]:
        (folder / name).write_bytes(b"truncated download")
    proc = cli("train", "--preset", "cifar10", "--set", f"data.root={tmp_path / 'cifar'}",
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("byol-ray: error: data.root: data_batch_1, ")
    assert "failed torchvision's integrity (md5) check" in proc.stderr
    assert "Ray" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- 2. tracking server lost mid-run


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.stop()


# Shorten MLflow's own client retries (minutes by default) so that the outage outlasts them.
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@pytest.mark.slow
@pytest.mark.timeout(4 * PATIENCE_S)  # above its waits: each may take PATIENCE_S under load
def test_tracking_server_lost_mid_run_loses_no_epoch_and_logs_none_twice(mlflow_server,
                                                                          tmp_path):
    """Stop the server mid-run for longer than the client's retries, then start it again on
    the same store: training went on meanwhile, and the run ends FINISHED with every epoch's
    metrics exactly once; the journal is empty. The run starts its own Ray cluster: the
    workers must inherit SHORT_RETRIES (a joined cluster's workers have its environment)."""
    epochs = 30
    journal = tmp_path / "journal"
    env = {**os.environ, **SHORT_RETRIES, "PYTHONUNBUFFERED": "1", "BYOL_RAY_JOURNAL": str(journal)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini",
         "--set", f"train.epochs={epochs}", "--set", f"eval.eval_every={epochs}",
         "--set", "train.checkpoint_every=0", "--tracking-uri", mlflow_server.uri,
         "--storage", str(tmp_path / "ray")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    console = Lines(proc)
    try:
        console.wait_for(f"[byol-ray] epoch 2/{epochs}")
        mlflow_server.stop()
        lost = console.wait_for("unreachable")  # after MLflow's own retries gave up
        console.wait_for(f"[byol-ray] epoch {epochs}/{epochs}")  # trained on without a server
        mlflow_server.start()
        back = console.wait_for("back after")
        assert proc.wait(timeout=PATIENCE_S) == 0, console.text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    out = console.text()
    assert any("[byol-ray] epoch" in line for line in console.lines[lost:back]), out[-4000:]

    client = MlflowClient(mlflow_server.uri)
    [run] = client.search_runs([client.get_experiment_by_name("byol-ray").experiment_id])
    assert run.info.status == "FINISHED", out[-3000:]
    for name, first in (("train/loss", 1), ("train/images_per_s", 1), ("epoch", 0)):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, name))
        assert steps == list(range(first, epochs + 1)), (name, steps)
    assert not list(journal.glob("*.jsonl")), "delivered records must leave the journal"


@pytest.mark.slow
def test_records_kept_while_the_server_never_came_back_are_delivered_by_sync(
        mlflow_server, tmp_path, monkeypatch, cli):
    """A run that ends while its server is still away says so on the console and keeps its
    metrics and its end in the journal; `byol-ray sync` delivers them, each epoch once."""
    from byol_ray.cli.main import resolve_config
    from byol_ray.runtime.tracking.logger import RunLogger, finish_run
    from byol_ray.runtime.tracking.run import Run

    for key, value in SHORT_RETRIES.items():
        monkeypatch.setenv(key, value)
    journal = str(tmp_path / "journal")
    run_id = Run.start(resolve_config("cpu-mini", []), mlflow_server.uri).run_id
    logger = RunLogger(mlflow_server.uri, run_id, journal)
    logger.log_epoch({"train/loss": 1.0}, 0)
    assert logger.close(timeout_s=60)  # delivered: the server is up
    mlflow_server.stop()
    logger = RunLogger(mlflow_server.uri, run_id, journal)  # a restarted worker, same journal
    for epoch in range(3):  # epoch 0 again (restored from scratch): MLflow has it already
        logger.log_epoch({"train/loss": 1.0 / (epoch + 1)}, epoch)
    assert not logger.close(timeout_s=5)
    assert not finish_run(mlflow_server.uri, run_id, journal=journal, timeout_s=5)

    mlflow_server.start()
    proc = cli("sync", "--journal", journal, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "delivered 4 buffered record(s)" in proc.stdout
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert not list(Path(journal).iterdir())
    proc = cli("sync", "--journal", journal, cwd=tmp_path)
    assert proc.returncode == 0 and "nothing to deliver" in proc.stdout


# ---------------------------------------------------------------- 6. corrupt checkpoint


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"])
def test_a_damaged_checkpoint_file_is_named_never_read_as_a_fresh_start(damage, tmp_path):
    import torch

    from byol_ray.jobs.pretrain.worker import CorruptCheckpointError, load_state

    path = tmp_path / "checkpoint_000001" / "state.pt"
    path.parent.mkdir()
    torch.save({"method": {"w": torch.ones(1000)}, "optimizer": {}, "epoch": 4}, path)
    assert load_state(path, str(path))["epoch"] == 4
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint file {path} .*(truncated|"
                                                     "missing)"):
        load_state(path, str(path))


def test_mlflow_is_reached_only_through_runtime_tracking():
    """One home for MLflow: buffered logging, the bounded health check and every read can
    only hold if nothing else talks to MLflow."""
    import re

    package = Path(__file__).resolve().parent.parent / "byol_ray"
    importers = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if re.search(r"^\s*(import mlflow|from mlflow)", p.read_text(), re.M)]
    assert importers and all(p.startswith("runtime/tracking") for p in importers), importers


# ---------------------------------------------------------------- exit status of each command


@pytest.mark.slow
def test_a_failed_train_exits_1_with_its_reason_on_one_line(tmp_path, ray_address):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = byol_ray("train", "--preset", "cpu-mini", "--set", "optim.name=sgd",
                    "--set", "optim.base_lr=1e30", "--set", "train.epochs=2",
                    "--set", "eval.eval_every=0", "--tracking-uri", uri,
                    "--address", ray_address, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    # Ray forwards the workers' own log lines too, some after ours.
    ours = [line for line in proc.stderr.splitlines() if line.startswith("byol-ray: error:")]
    assert len(ours) == 1 and ours[0].startswith(
        "byol-ray: error: the run failed: FloatingPointError: loss is"), proc.stderr[-3000:]
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("byol-ray").experiment_id])
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["failure_reason"]


def test_reproduce_dry_run_exits_0_and_a_bad_reproduce_exits_2(tmp_path, cli):
    proc = cli("reproduce", "--preset", "cpu-mini", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "random-init" in proc.stdout
    proc = cli("reproduce", "--preset", "cpu-mini", "--tracking-uri", "htp:/bad",
               cwd=tmp_path)
    assert proc.returncode == 2 and "--tracking-uri: 'htp:/bad'" in proc.stderr
