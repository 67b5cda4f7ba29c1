"""End to end on real Ray (local cluster) and a real MLflow store: the cpu-mini preset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from byol_ray.cli import resolve_config

pytestmark = pytest.mark.slow

EPOCH_METRICS = ("train/loss", "train/lr", "train/tau", "train/images_per_s",
                 "eval/knn_top1", "eval/embedding_std")


def _only_run(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("byol-ray")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_train_command_runs_two_ray_workers_and_leaves_one_finished_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini",
         "--set", "train.epochs=4", "--set", "eval.eval_every=2",
         "--set", "train.checkpoint_every=2", "--tracking-uri", uri,
         "--storage", str(tmp_path / "ray")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "random-init encoder" in proc.stdout and "byol after 4 epochs" in proc.stdout
    assert "[byol-ray] epoch 4/4" in proc.stdout + proc.stderr

    client, run = _only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["method"] == "byol" and run.data.tags["preset"] == "cpu-mini"
    assert run.data.params["method.tau_base"] == "0.99"
    assert run.data.params["scaling.num_workers"] == "2"
    for name in (*EPOCH_METRICS, "eval/linear_top1", "baseline/knn_top1",
                 "baseline/linear_top1", "eval/collapsed"):
        assert name in run.data.metrics, name
    loss_steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert loss_steps == [1, 2, 3, 4]
    knn_steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/knn_top1")]
    assert knn_steps == [0, 2, 4]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config.yaml" in artifacts
    assert list(Path(tmp_path / "ray").rglob("state.pt")), "no checkpoint was written"


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _pretrain(tmp_path, *overrides):
    from byol_ray.train.trainer import run_pretraining

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", list(overrides))
    result = run_pretraining(cfg, uri, storage_path=str(tmp_path / "ray"))
    _, run = _only_run(uri)
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    return run.data.metrics


def test_byol_learns_and_stays_healthy_while_no_predictor_tau0_collapses(ray_cluster, tmp_path):
    short = ("train.epochs=20", "eval.eval_every=20", "train.checkpoint_every=0")
    byol = _pretrain(tmp_path / "byol", *short)
    assert byol["eval/collapsed"] == 0.0
    assert byol["eval/knn_top1"] > byol["baseline/knn_top1"]

    collapsed = _pretrain(tmp_path / "collapse", *short, "method.predictor=false",
                          "method.tau_base=0", "method.tau_schedule=constant")
    assert collapsed["eval/collapsed"] == 1.0
    assert collapsed["eval/embedding_std"] < byol["eval/embedding_std"] / 3


def test_random_init_run_only_evaluates(ray_cluster, tmp_path):
    metrics = _pretrain(tmp_path, "method.name=random_init")
    assert "train/loss" not in metrics
    assert {"eval/knn_top1", "eval/linear_top1", "eval/embedding_std"} <= set(metrics)


def test_simclr_trains_through_the_same_plumbing(ray_cluster, tmp_path):
    metrics = _pretrain(tmp_path, "method.name=simclr", "train.epochs=2")
    assert metrics["train/loss"] > 0 and "train/tau" not in metrics
    assert {"eval/knn_top1", "eval/linear_top1"} <= set(metrics)


def test_a_failing_run_ends_failed_with_its_reason(ray_cluster, tmp_path):
    from byol_ray.train.trainer import run_pretraining

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # lr so large that the loss overflows: the worker raises, the run must end FAILED.
    cfg = resolve_config("cpu-mini", ["optim.name=sgd", "optim.base_lr=1e30",
                                      "train.epochs=2", "eval.eval_every=0"])
    with pytest.raises(Exception):  # noqa: B017 - Ray wraps the worker's error
        run_pretraining(cfg, uri, storage_path=str(tmp_path / "ray"))
    _, run = _only_run(uri)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["failure_reason"] or "nan" in run.data.tags[
        "failure_reason"].lower()


def test_a_killed_worker_resumes_from_the_last_checkpoint(ray_cluster, tmp_path):
    """FailureConfig: SIGKILL a Ray Train worker after the first checkpoint; the group restarts
    from that checkpoint (the epoch-0 baseline is not evaluated twice) and the run finishes."""
    import signal
    import threading
    import time

    from byol_ray.train.trainer import run_pretraining

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", ["train.epochs=16", "train.checkpoint_every=4",
                                      "eval.eval_every=16", "scaling.max_failures=1"])
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=run_pretraining(cfg, uri, storage_path=str(tmp_path / "ray"))))
    thread.start()
    # Kill once the epoch-4 checkpoint is surely registered: two epochs after it were logged.
    deadline = time.monotonic() + 300
    while not (list((tmp_path / "ray").rglob("state.pt")) and _last_logged_epoch(uri) >= 6):
        assert time.monotonic() < deadline and thread.is_alive(), "no checkpoint appeared"
        time.sleep(0.2)
    os.kill(_train_worker_pids()[0], signal.SIGKILL)
    thread.join(timeout=400)
    assert "result" in outcome, "the run did not recover"

    client, run = _only_run(uri)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "baseline/knn_top1")) == 1
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert steps == set(range(1, 17))


def _train_worker_pids() -> list[int]:
    """Ray names its actor processes by class (`ray::RayTrainWorker...`), as `ps` shows."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and cmdline.startswith(b"ray::RayTrainWorker"):
            pids.append(int(proc.name))
    assert pids, "no Ray Train worker process found"
    return pids


def _last_logged_epoch(uri: str) -> int:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("byol-ray")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    history = client.get_metric_history(runs[0].info.run_id, "train/loss") if runs else []
    return max((m.step for m in history), default=0)
