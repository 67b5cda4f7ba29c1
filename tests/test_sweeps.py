"""Sweeps: the cells each grid defines, and real Tune sweeps tracked in MLflow."""

import json
import math
import os
import re
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest
from console_lines import PATIENCE_S, Lines
from local_servers import kill_session, paused_pid, ray_node
from mlflow.tracking import MlflowClient
from PIL import Image

from byol_ray.cli.main import main
from byol_ray.cli.sweep import DEFAULT_GRIDS, GRID_ORDER, load_grid, main_dry_run_keys, write_tables
from byol_ray.core.config import AUGMENT_RECIPES
from byol_ray.jobs.sweep.plan import SweepOptions, mark_twins, plan
from byol_ray.jobs.sweep.run import SweepResult
from byol_ray.runtime.pause_points import PAUSE_ENV
from byol_ray.runtime.session import CHECKPOINT_MANIFEST

ROOT = Path(__file__).resolve().parent.parent


def keys(grid: str, preset: str, seeds: int = 1) -> set[str]:
    return {t.key for t in plan(load_grid(grid), SweepOptions(preset, seeds=seeds),
                                check_paths=False)}


def _expected(method_cells: list[tuple[str, str, str]], seeds: int) -> set[str]:
    return {f"{m}-{axis}={v}-s{s}" for m, axis, v in method_cells for s in range(seeds)} | {
        "random-init"}


def _tau_schedules(preset: str) -> dict[str, tuple[float, str, str]]:
    """Table 5a's trials: tau_base, its schedule and the target's initialisation, by value."""
    return {t.cell.value: (t.cfg.method.tau_base, t.cfg.method.tau_schedule,
                           t.cfg.method.target_init)
            for t in plan(load_grid("ema_decay"), SweepOptions(preset, random_init=False),
                          check_paths=False)}


@pytest.mark.parametrize("preset", ["imagenet-300", "cpu-mini"])
def test_ema_decay_rows_run_the_papers_schedules(preset):
    """Table 5a: tau_base under the cosine schedule tau -> 1, only tau = 0 held constant (its
    footnote); no 0.996 row (the 1000-epoch setting); the target its own random draw."""
    rows = {"1": (1.0, "cosine", "independent"), "0.99": (0.99, "cosine", "independent"),
            "0": (0.0, "constant", "independent")}
    if preset == "cpu-mini":  # and the preset's own tau_base (docs/experiments/miniature.md)
        rows |= {"0.97": (0.97, "cosine", "independent")}
    else:
        rows |= {"0.999": (0.999, "cosine", "independent"),
                 "0.9": (0.9, "cosine", "independent")}
    assert _tau_schedules(preset) == rows


@pytest.mark.parametrize("seeds", [1, 3])
def test_paper_grids_hold_exactly_the_papers_cells(seeds):
    taus = ["1", "0.999", "0.99", "0.9", "0"]
    assert keys("ema_decay", "imagenet-300", seeds) == _expected(
        [("byol", "tau_base", t) for t in taus], seeds)
    batches = ["4096", "2048", "1024", "512", "256", "128", "64"]
    assert keys("batch_size", "imagenet-300", seeds) == _expected(
        [(m, "batch_size", b) for m in ("byol", "simclr") for b in batches], seeds)
    augment = [(m, "recipe", r) for m in ("byol", "simclr") for r in AUGMENT_RECIPES]
    augment += [(m, "strength", s) for m in ("byol", "simclr") for s in ("0", "0.5", "1.5")]
    assert keys("augmentations", "imagenet-300", seeds) == _expected(augment, seeds)
    rows = ["pred=yes,target=yes,beta=0", "pred=yes,target=yes,beta=1",
            "pred=no,target=yes,beta=1", "pred=no,target=no,beta=1",
            "pred=yes,target=no,beta=1", "pred=yes,target=no,beta=0",
            "pred=no,target=yes,beta=0", "pred=no,target=no,beta=0"]
    table5b = [("byol", "target_network", r) for r in rows]
    # the (–, –, 1) row is SimCLR's loss as a BYOL variant; no method=simclr cell (Fig. 3a's)
    assert keys("target_network", "imagenet-300", seeds) == _expected(table5b, seeds)


def test_cpu_mini_grids_are_reduced_but_show_every_axis():
    assert keys("ema_decay", "cpu-mini") == _expected(
        [("byol", "tau_base", t) for t in ("1", "0.99", "0.97", "0")], 1)
    assert keys("batch_size", "cpu-mini") == _expected(
        [(m, "batch_size", b) for m in ("byol", "simclr") for b in ("64", "4")], 1)
    assert keys("augmentations", "cpu-mini") == _expected(
        [(m, axis, v) for m in ("byol", "simclr")
         for axis, v in (("recipe", "baseline"), ("recipe", "crop_only"))], 1)
    cells = keys("target_network", "cpu-mini")
    assert "byol-target_network=pred=no,target=no,beta=1-s0" in cells and len(cells) == 5
    assert not any(key.startswith("simclr-") for key in cells)
    for switch in ("pred=no", "target=no", "beta=1"):  # each Table 5b switch flips somewhere
        assert any(switch in key for key in cells), switch


def test_trial_configs_carry_their_cell_and_the_sweep_settings():
    trials = {t.key: t for t in plan(load_grid("ema_decay"), SweepOptions(
        "cpu-mini", overrides=["train.epochs=3"]))}
    cfg = trials["byol-tau_base=0-s0"].cfg
    assert cfg.method.tau_base == 0.0 and cfg.method.tau_schedule == "constant"
    assert cfg.train.epochs == 3 and cfg.scaling.num_workers == 1
    assert cfg.scaling.cpus_per_worker == 0.5
    assert cfg.tracking.experiment == "ema_decay/cpu-mini"
    assert trials["random-init"].cfg.method.name == "random_init"


@pytest.mark.parametrize("grid", GRID_ORDER)
def test_dry_run_prints_the_trials_without_starting_anything(grid, script):
    proc = script(ROOT / "sweeps" / f"{grid}.py", "--preset", "imagenet", "--seeds", "2",
                  "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert main_dry_run_keys(proc.stdout) == keys(grid, "imagenet", seeds=2)
    assert "Ray" not in proc.stderr and "8 CPU" in proc.stdout
    if grid == "ema_decay":  # every trial shows its tau schedule and the target's init
        rows = {line.split()[0]: line for line in proc.stdout.splitlines()
                if line and not line.startswith(" ")}  # the table's rows, not the lines below
        for key, tau in (("byol-tau_base=0.99-s1", r"cosine 0\.99->1"),
                         ("byol-tau_base=0.9-s0", r"cosine 0\.9->1"),
                         ("byol-tau_base=0-s0", "0 constant"),
                         ("byol-tau_base=1-s0", "1 constant")):
            assert re.search(rf"  {tau}\s+independent(  |$)", rows[key]), rows[key]
        assert re.search(r"  -\s+-(  |$)", rows["random-init"])  # no target to describe


def test_a_bad_target_init_exits_2_naming_the_field(capsys):
    assert main(["sweep", "ema_decay", "--preset", "cpu-mini", "--dry-run",
                 "--set", "method.target_init=shared"]) == 2
    assert "method.target_init: 'shared' is not one of: independent, copy" in (
        capsys.readouterr().err)


def test_dry_run_shows_each_trials_batch_protocol_and_the_grids_cost(script):
    """Issues 19 and 20: Fig. 3a at 3 seeds on imagenet-300 keeps the optimiser batch 4096 and
    its lr, computes BN and negatives in groups of B, and costs thousands of GPU-hours."""
    proc = script(ROOT / "sweeps" / "batch_size.py", "--preset", "imagenet-300", "--seeds", "3",
                  "--dry-run", "--gpus", "64")
    assert proc.returncode == 0, proc.stderr
    row = next(line.split() for line in proc.stdout.splitlines()
               if line.startswith("byol-batch_size=64-s0 "))
    assert row[4:9] == ["4096", "groups", "of", "64", "4.8"], row  # 0.3 x 4096 / 256 [P §5]
    [cost] = [line for line in proc.stdout.splitlines() if line.startswith("cost: ")]
    hours = int(re.search(r"([\d,]+) of pretraining", cost).group(1).replace(",", ""))
    # 42 trained trials x 300 epochs x 1,281,167 images at 1286 images/s per H200
    assert hours == math.ceil(42 * 300 * 1_281_167 / 1286 / 3600) and hours > 1000, cost
    assert "on 64 GPUs" in cost and "NVIDIA H200" in cost, cost
    # the linear protocol on all 43 trials (random-init too), a lower bound (decoder-capped)
    protocols = int(re.search(r"([\d,]+) of protocols", cost).group(1).replace(",", ""))
    assert protocols == math.ceil(43 * (80 * 1_281_167 + 12_811.67 + 50_000) / 1865 / 3600)
    assert "43 trials, at least" in cost and "lower bounds" in cost, cost


def test_dry_run_shows_each_preset_s_protocols_and_simclr_s_settings(capsys):
    assert main(["sweep", "batch_size", "--preset", "imagenet-300", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "protocols after every trial (--eval): linear" in out  # the paper's, by default
    assert ("simclr trials on imagenet-300 take its own settings before --set "
            "(METHOD_SETTINGS): optim.base_lr=0.3 optim.weight_decay=1e-6") in out
    assert main(["sweep", "batch_size", "--preset", "imagenet-300", "--eval", "none",
                 "--dry-run"]) == 0
    assert "(--eval): none" in capsys.readouterr().out
    assert main(["sweep", "batch_size", "--preset", "cpu-mini", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(--eval): none" in out and "METHOD_SETTINGS" not in out
    assert main(["sweep", "ema_decay", "--preset", "cpu-mini", "--eval", "linear,finetune",
                 "--dry-run"]) == 0
    assert "(--eval): linear, finetune" in capsys.readouterr().out
    assert SweepOptions("imagenet").evals == ["linear"] and SweepOptions("cpu-mini").evals == []
    trials = {t.key: t.cfg for t in plan(load_grid("batch_size"), SweepOptions("imagenet"),
                                         check_paths=False)}
    simclr, byol = trials["simclr-batch_size=4096-s0"], trials["byol-batch_size=4096-s0"]
    assert (simclr.optim.base_lr, simclr.model.proj_dim) == (0.3, 128)
    assert (byol.optim.base_lr, byol.model.proj_dim) == (0.2, 256)


def test_a_bad_override_stops_the_sweep_before_ray_starts(script):
    proc = script(ROOT / "sweeps" / "ema_decay.py", "--preset", "cpu-mini",
                  "--set", "data.batch_size=0")
    assert proc.returncode == 2
    assert "data.batch_size: 0 is out of range" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr


# --------------------------------------------------------------------------- real sweeps


def _sweep(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "sweeps" / "ema_decay.py"), "--preset", "cpu-mini",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", str(tmp_path / "ray"), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _kill_driver_at(point: str, tmp_path: Path, *args: str) -> str:
    """Run the sweep until its driver reaches pause point `point` (runtime/pause_points.py),
    then SIGKILL the driver's session (the driver and the local Ray cluster it started,
    workers included; on a cluster it joined, Ray ends the dead driver's trials). Returns the
    driver's output."""
    marker = tmp_path / f"paused-at-{point}"
    driver = _sweep(tmp_path, *args, env={PAUSE_ENV: f"{point}:{marker}"})
    assert paused_pid(driver, marker, point, timeout_s=PATIENCE_S) == driver.pid
    kill_session(driver)
    out, _ = driver.communicate()
    marker.unlink()
    assert driver.returncode == -signal.SIGKILL, out[-3000:]
    return out


def _runs(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ema_decay/cpu-mini")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    return client, parents, children


SMALL = ("--only", "random-init", "--only", "byol-tau_base=0.99-s0",
         "--only", "byol-tau_base=0-s0", "--concurrent", "1",
         "--set", "train.epochs=8", "--set", "train.checkpoint_every=2")


@pytest.mark.slow
@pytest.mark.timeout(4 * PATIENCE_S)  # three drivers, each may take PATIENCE_S under load
def test_a_diverging_trial_fails_and_a_driver_killed_as_trials_start_or_the_parent_closes(
        tmp_path, ray_address):
    """A diverging trial ends FAILED and the sweep goes on. The driver is SIGKILLed twice at
    pause points: once while the trials' child runs are being created (the first one exists,
    its params not logged yet, the second not created), and on `--resume` once every trial
    has ended but the parent run is not closed. Each `--resume` runs only what is not
    FINISHED, under the same parent and child runs, and the parent ends FINISHED with
    failed_trials=1. The drivers join the session's Ray cluster (at neither pause point does a
    trial run; a lost cluster is the next test's)."""
    byol, args = "byol-tau_base=0.99-s0", (
        "--only", "random-init", "--only", "byol-tau_base=0.99-s0", "--set", "optim.name=sgd",
        "--set", "optim.base_lr=1e30", "--set", "train.epochs=2", "--address", ray_address)

    _kill_driver_at("trials-start", tmp_path, *args)
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"
    assert [c.data.tags["trial"] for c in children] == [byol] and not children[0].data.params
    parent_id, byol_run_id = parents[0].info.run_id, children[0].info.run_id

    out = _kill_driver_at("parent-closing", tmp_path, *args, "--resume")
    assert "2 trials: 0 finished before, 2 to run" in out and f"FAILED {byol}" in out
    _, parents, children = _runs(tmp_path)
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "RUNNING"  # killed before it was closed
    status = {c.data.tags["trial"]: c for c in children}
    assert len(children) == 2 and status[byol].info.run_id == byol_run_id
    assert status["random-init"].info.status == "FINISHED"
    failed = status[byol]
    assert failed.info.status == "FAILED" and "diverged" in failed.data.tags["failure_reason"]
    assert failed.data.params["method.name"] == "byol"  # described on resume

    driver = _sweep(tmp_path, *args, "--resume")
    out, _ = driver.communicate(timeout=PATIENCE_S)
    assert driver.returncode == 1, out[-4000:]
    assert "2 trials: 1 finished before, 1 to run" in out and f"FAILED {byol}" in out
    _, parents, children = _runs(tmp_path)
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["failed_trials"] == "1"
    assert sorted((c.data.tags["trial"], c.info.run_id, c.info.status) for c in children) == [
        (byol, byol_run_id, "FAILED"),
        ("random-init", status["random-init"].info.run_id, "FINISHED")]


@pytest.fixture(scope="module")
def ray_head(ray_cluster_of_session) -> subprocess.Popen:
    """The session's `ray start --head` cluster (tests/conftest.py), for the tests that only
    need a live cluster to join (not one they kill)."""
    return ray_cluster_of_session


@pytest.mark.slow
def test_a_sweep_the_cluster_can_never_host_stops_at_once(tmp_path, ray_head):
    """8 GPU workers per trial on this CPU-only Ray cluster: a clear error, not a hang."""
    driver = _sweep(tmp_path, "--set", "scaling.use_gpu=true", "--address", ray_head.address)
    out, _ = driver.communicate(timeout=600)  # a fresh driver's imports: minutes under load
    assert driver.returncode == 2, out[-3000:]
    assert "scaling.use_gpu: true, but the Ray cluster has no GPUs" in out
    driver = _sweep(tmp_path, "--set", "scaling.num_workers=64", "--address", ray_head.address)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 2, out[-3000:]
    assert "scaling.num_workers: 64 workers x 0.5 CPUs need 32 CPUs" in out


def _registered_epoch(storage: Path, trial: str) -> int | None:
    """The epoch of the latest checkpoint registered for `trial`, None before the first: a
    one-worker trial's newest complete checkpoint that Tune persisted (runtime/launch.py's
    in-trial form: its manifest), else Ray Train's controller's snapshot file."""
    newest = None
    for manifest in storage.rglob(CHECKPOINT_MANIFEST):
        if any(part.startswith(f"{trial}-") for part in manifest.parts):
            with suppress(OSError, ValueError):  # being written
                data = json.loads(manifest.read_text())
                if newest is None or data["time"] > newest[0]:
                    newest = (data["time"], int(data["metrics"]["epoch"]))
    if newest:
        return newest[1]
    for snapshot in storage.rglob("checkpoint_manager_snapshot.json"):
        if trial in snapshot.parts:
            with suppress(OSError, ValueError):  # being written
                latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
                if latest:
                    return int(latest["metrics"]["epoch"])
    return None


def _resumed_epochs(out: str) -> list[int]:
    return [int(e) for e in re.findall(r"resumed from checkpoint after epoch (\d+)", out)]


@pytest.mark.slow
@pytest.mark.timeout(5 * PATIENCE_S)  # above its waits: each may take PATIENCE_S under load
def test_a_sweep_resumes_through_a_killed_driver_and_a_lost_ray_cluster(tmp_path, capsys,
                                                                        ray_head):
    """One sweep of three trials, two faults, three runs.

    1. The driver is SIGKILLed with the local Ray cluster it started (its session), once one
       trial finished and Ray registered a checkpoint of the next.
    2. `--resume` joins a `ray start --head` cluster of the test's own; once the interrupted
       trial has continued from its checkpoint there, that cluster is killed as `ray stop
       --force` would (SIGKILL of every process of it). Not `ray stop --force` itself: it
       kills every Ray process of the machine's user, found by process name, whichever
       cluster they belong to (other jobs' on this shared machine), so the test SIGKILLs
       exactly its own cluster's processes (its session). The sweep exits 1 with one clear line.
    3. `--resume` on another `ray start` cluster finishes the sweep: finished trials are not
       run again, the interrupted trial continues from its latest checkpoint in --storage,
       no trial has two child runs, every epoch's metrics are logged once, and the parent
       ends FINISHED with failed_trials 0."""
    storage = tmp_path / "ray"

    # 1. The driver killed mid-training.
    driver = _sweep(tmp_path, *SMALL)
    console = Lines(driver)

    def one_finished_and_the_next_checkpointed() -> str | None:
        _, _, children = _runs(tmp_path)
        if any(c.info.status == "FINISHED" for c in children):
            for child in children:
                trial = child.data.tags["trial"]
                if child.info.status == "RUNNING" and _registered_epoch(storage, trial):
                    return trial
        return None

    interrupted = console.wait_until("trial finished and the next checkpointed",
                                     one_finished_and_the_next_checkpointed)
    kill_session(driver)  # the driver and the local Ray cluster it started, workers included
    assert "started a local Ray cluster at " in console.text()  # its own, not the module's
    registered = _registered_epoch(storage, interrupted)  # final: nothing of the run is left
    _, _, children = _runs(tmp_path)
    finished_before = {c.data.tags["trial"]: c.info.run_id for c in children
                       if c.info.status == "FINISHED"}
    assert 0 < len(finished_before) < 3 and interrupted not in finished_before

    # 2. `--resume` on a `ray start` cluster, lost once the trial continued from its checkpoint.
    with ray_node() as cluster:
        driver = _sweep(tmp_path, *SMALL, "--resume", "--address", cluster.address)
        console = Lines(driver)
        console.wait_for("resumed from checkpoint after epoch")
        kill_session(cluster)
        driver.wait(timeout=PATIENCE_S)
    out = console.text()
    assert driver.returncode == 1, out[-4000:]
    assert f"3 trials: {len(finished_before)} finished before, " in out
    assert _resumed_epochs(out)[0] == registered and registered < 8, out[-4000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("[sweep] error: lost the Ray cluster (its GCS at "), out[-4000:]
    assert "rerun the same command with --resume" in last and str(storage) in last
    registered = _registered_epoch(storage, interrupted)
    _, _, children = _runs(tmp_path)
    assert {c.data.tags["trial"]: c.info.run_id for c in children
            if c.info.status == "FINISHED"}.items() >= finished_before.items()
    finished_before = {c.data.tags["trial"]: c.info.run_id for c in children
                       if c.info.status == "FINISHED"}
    assert interrupted not in finished_before

    # 3. `--resume` on another `ray start` cluster (the module's) finishes the sweep.
    resumed = _sweep(tmp_path, *SMALL, "--resume", "--address", ray_head.address)
    out, _ = resumed.communicate(timeout=PATIENCE_S)
    assert resumed.returncode == 0, out[-4000:]
    assert f"3 trials: {len(finished_before)} finished before" in out
    epochs = _resumed_epochs(out)
    assert epochs and all(registered <= epoch < 8 for epoch in epochs), epochs

    client, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["failed_trials"] == "0"
    assert sorted(c.data.tags["trial"] for c in children) == sorted(
        ["random-init", "byol-tau_base=0.99-s0", "byol-tau_base=0-s0"])
    for child in children:
        tags = child.data.tags
        assert child.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["ablation"] in ("tau_base", "random_init") and tags["seed"] == "0"
        assert tags["method"] in ("byol", "random_init") and tags["grid"] == "ema_decay"
        assert {"eval/knn_top1", "eval/linear_top1", "eval/collapsed"} <= set(child.data.metrics)
        if tags["trial"] in finished_before:  # not run again: same run, one evaluation
            assert child.info.run_id == finished_before[tags["trial"]]
            history = client.get_metric_history(child.info.run_id, "eval/linear_top1")
            assert len(history) == (1 if tags["trial"] == "random-init" else 2)
        if tags["method"] == "byol":  # each epoch's metrics once, the interrupted trial's too
            run_id = child.info.run_id
            assert [m.step for m in client.get_metric_history(run_id, "baseline/knn_top1")
                    ] == [0]
            assert sorted(m.step for m in client.get_metric_history(run_id, "epoch")) == list(
                range(9))
    collapsed = {c.data.tags["trial"]: c.data.metrics["eval/collapsed"] for c in children}
    assert collapsed["byol-tau_base=0.99-s0"] == 0.0

    # The paper's tables from this real sweep's store (issue: tables end to end).
    out = tmp_path / "tables"
    assert main(["tables", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "--out", str(out)]) == 0
    for name in ("table_5a", "table_5b", "fig_3a", "fig_3b", "baseline"):
        for suffix in (".md", ".csv", ".tex"):
            assert (out / f"{name}{suffix}").stat().st_size > 0, name + suffix
    for png in ("fig_3a.png", "fig_3b.png"):
        with Image.open(out / png) as image:
            image.verify()
    report = (out / "report.md").read_text()
    assert "Table 5a" in report and "72.5" in report  # the paper's value beside ours

    # How `reproduce` ends: the same report, and the tables on the console.
    result = SweepResult("ema_decay-cpu-mini", "ema_decay/cpu-mini", parents[0].info.run_id,
                         f"sqlite:///{tmp_path / 'mlflow.db'}", [], {})
    write_tables([result], "cpu-mini", tmp_path / "reproduced", "knn")
    assert "Table 5a" in capsys.readouterr().out
    assert (tmp_path / "reproduced" / "report.md").is_file()


def test_concurrency_follows_what_the_cluster_fits():
    from byol_ray.jobs.sweep.run import _fits

    trials = plan(load_grid("ema_decay"), SweepOptions("cpu-mini"))
    assert _fits(trials, {"CPU": 2.0}) == 4  # half-core trials on 2 cores
    assert _fits(trials, {"CPU": 0.2}) == 1
    big = plan(load_grid("ema_decay"), SweepOptions("imagenet"), check_paths=False)
    assert _fits(big, {"CPU": 128.0}) == 2  # 8 workers x 8 CPUs each
    assert _fits(big, {"CPU": 128.0, "GPU": 8.0}) == 1  # and a GPU each
    assert _fits(big, {"CPU": 4.0}) == 1  # never 0: the resource check speaks first


def test_reproduce_plans_every_grid_with_one_random_init_run(capsys):
    assert main(["reproduce", "--preset", "cpu-mini", "--seeds", "2", "--dry-run"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()
            if line and not line.startswith(("trial ", "ema_decay", "target_network",
                                             "batch_size", "augmentations", "cost: ",
                                             "all grids: ", "protocols after",
                                             "what each cell sets", "target at the end",
                                             " "))
            and " trials, " not in line]
    assert rows.count("random-init") == 1  # it serves every grid's tables
    assert "byol-tau_base=0.99-s1" in rows and "simclr-recipe=crop_only-s1" in rows
    assert len(rows) == 2 * 16 + 1
    trials = plan(load_grid("batch_size"), SweepOptions("cpu-mini", random_init=False))
    assert all(t.cell.method != "random_init" for t in trials)


def test_reproduce_runs_an_opt_in_grid_only_when_asked(capsys):
    assert "normalization" in GRID_ORDER and "normalization" not in DEFAULT_GRIDS
    assert main(["reproduce", "--preset", "cpu-mini", "--grids", "normalization",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "byol-normalization=no_bn-s0" in out and "tau_base" not in out
    with pytest.raises(SystemExit):
        main(["reproduce", "--grids", "norm", "--dry-run"])
    assert "'norm': a comma-separated list of ema_decay" in capsys.readouterr().err


def test_reproduce_runs_a_config_repeated_across_grids_once_and_shares_its_results(tmp_path):
    grids = [plan(load_grid(name), SweepOptions("cpu-mini", seeds=2, random_init=i == 0))
             for i, name in enumerate(DEFAULT_GRIDS)]
    # BYOL at the preset's setting in 4 grids (Table 5a's tau 0.97 row runs the preset's
    # cosine schedule), SimCLR in 2 (Fig. 3a and 3b); 2 seeds: (3 + 1) x 2 twins.
    assert mark_twins(grids) == 8
    twins = {t.key: t.twin_of.key for trials in grids for t in trials if t.twin_of}
    assert twins["byol-target_network=pred=yes,target=yes,beta=0-s1"] == "byol-tau_base=0.97-s1"
    assert twins["byol-batch_size=64-s1"] == "byol-tau_base=0.97-s1"
    assert twins["simclr-recipe=baseline-s0"] == "simclr-batch_size=64-s0"

    from mlflow.tracking import MlflowClient

    from byol_ray.runtime.tracking.run import Run
    from byol_ray.runtime.tracking.sweeps import share_results

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    source, target = (client.create_run(client.create_experiment(n)).info.run_id
                      for n in ("a", "b"))
    for epoch in (0, 20):
        Run(uri, source).log_metrics({"eval/knn_top1": 50.0 + epoch}, step=epoch)
    Run(uri, source).end()
    share_results(Run(uri, source), target)
    shared = client.get_run(target)
    assert shared.info.status == "FINISHED" and shared.data.tags["same_as"] == source
    assert [m.value for m in client.get_metric_history(target, "eval/knn_top1")] == [50.0, 70.0]


def test_dry_run_says_what_each_cell_sets(capsys):
    """A cell's axis value is a label: the dry run spells out the overrides behind it."""
    assert main(["sweep", "normalization", "--preset", "imagenet-300", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("  normalization=encoder_bn_only: model.encoder_norm=batch model.projector_norm=none "
            "model.predictor_norm=none\n") in out
    assert ("  normalization=gn_ws: model.encoder_norm=group_ws model.projector_norm=group "
            "model.predictor_norm=group\n") in out


def test_every_seed_of_a_cell_has_the_cells_colour_in_the_mlflow_ui(tmp_path):
    """The UI draws a run in its `mlflow.runColor`: seeds of one cell share a colour, cells
    differ (child runs created as a sweep does, in a real SQLite store)."""
    from byol_ray.jobs.sweep.run import _attach_child_runs, _open_parent

    grid, options = load_grid("ema_decay"), SweepOptions("cpu-mini", seeds=2)
    trials = plan(grid, options, check_paths=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = _open_parent(grid, options, "colours", uri)
    _attach_child_runs(trials, parent, grid, options, "colours")
    client = MlflowClient(uri)
    colour = {t.key: client.get_run(t.run_id).data.tags["mlflow.runColor"] for t in trials}
    assert colour["byol-tau_base=0.99-s0"] == colour["byol-tau_base=0.99-s1"]
    by_cell = {t.cell: colour[t.key] for t in trials}
    assert len(set(by_cell.values())) == len(by_cell) == 5
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in by_cell.values())
