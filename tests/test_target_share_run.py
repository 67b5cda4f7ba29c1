"""A short real run (MLflow) logs the share of its initialisation its target keeps (issue 30):
the product of every tau its EMA applied, logged as train/target_init_share, equals what `train
--dry-run` reports from the config alone, and the run warns that it is above 1 %. The run is the
loop's plain launch (`--no-ray`, one worker): what is checked is the loop's EMA, the same in
every launch form (tests/test_launch.py), without a Ray start."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from byol_ray.cli.main import resolve_config
from byol_ray.learn.target_memory import TargetMemory, format_share, tau_at

pytestmark = pytest.mark.slow

OVERRIDES = ("train.epochs=3", "data.batch_size=128", "scaling.num_workers=1",
             "eval.eval_every=0", "train.checkpoint_every=0", "eval.linear_epochs=1")


def test_logged_share_is_the_product_of_the_applied_taus_and_the_dry_run_s(tmp_path, cli):
    cfg = resolve_config("cpu-mini", list(OVERRIDES), check_paths=False)
    memory = TargetMemory.of(cfg)
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    dry = cli("train", "--preset", "cpu-mini", *sets, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"left at the end {format_share(memory.log_share)} " in dry.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "byol_ray.cli", "train", "--no-ray", "--preset", "cpu-mini",
         *sets, "--tracking-uri", uri, "--storage", str(tmp_path / "ray")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-4000:]
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("byol-ray").experiment_id])[0]
    history = {name: sorted(client.get_metric_history(run.info.run_id, name),
                            key=lambda m: m.step)
               for name in ("train/tau", "train/target_init_share")}
    # The tau logged at each epoch's end is the schedule's at that step: the loop took the
    # steps the dry run counted (1437 // 128 = 11 a epoch, 33 in all).
    per_epoch = memory.steps // cfg.train.epochs
    assert [m.value for m in history["train/tau"]] == pytest.approx(
        [tau_at(e * per_epoch, memory.steps, cfg.method.tau_base) for e in (1, 2, 3)], abs=1e-12)
    product = 1.0
    for k in range(1, memory.steps + 1):  # the method's own schedule, step by step
        product *= tau_at(k, memory.steps, cfg.method.tau_base, cfg.method.tau_schedule)
    logged = history["train/target_init_share"][-1].value
    assert logged == pytest.approx(product, rel=1e-9)
    assert logged == pytest.approx(memory.share, rel=1e-9)
    assert memory.share > 0.01 and f"target ends holding {logged:.3g}" in console
