"""The launch's three forms (runtime/launch.py): a plain process without Ray, inside a Tune
trial's own process, a Ray Train run; the same loop and the same numbers in each."""

import json
import os
import re
import subprocess
import sys
import textwrap
from contextlib import suppress
from pathlib import Path

import pytest
import torch
from console_lines import Lines
from local_servers import kill_session
from mlflow.tracking import MlflowClient

from byol_ray.runtime.session import CHECKPOINT_MANIFEST, LocalSession

ROOT = Path(__file__).resolve().parent.parent
ONE_EPOCH = ["scaling.num_workers=1", "train.epochs=1", "eval.eval_every=0",
             "eval.linear_epochs=1"]


def _checkpoint(folder: Path, epoch: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch}, folder / "state.pt")
    return folder


def test_a_local_session_keeps_two_checkpoints_and_resumes_from_the_newest_complete_one(
        tmp_path):
    session = LocalSession(torch.device("cpu"), tmp_path / "kept")
    with session.restored() as resume:
        assert resume is None
    for epoch in (2, 4, 6):
        session.report({"epoch": epoch}, _checkpoint(tmp_path / f"out{epoch}", epoch))
    kept = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert kept == ["checkpoint_000001", "checkpoint_000002"]
    with session.restored() as resume:
        assert torch.load(resume.folder / "state.pt")["epoch"] == 6
    # The newest copy cut short (its state.pt smaller than its manifest says): not resumed.
    newest = tmp_path / "kept" / "checkpoint_000002" / "state.pt"
    newest.write_bytes(newest.read_bytes()[:10])
    with LocalSession(torch.device("cpu"), tmp_path / "kept").restored() as resume:
        assert torch.load(resume.folder / "state.pt")["epoch"] == 4
        assert json.loads((resume.folder / CHECKPOINT_MANIFEST).read_text())["metrics"] == {
            "epoch": 4}


PLAIN = textwrap.dedent("""
    import sys
    from byol_ray.core.config import validate
    from byol_ray.core.presets import preset_config
    from byol_ray.jobs.pretrain.driver import run_pretraining
    cfg = validate(preset_config("cpu-mini", sys.argv[3:]))
    result = run_pretraining(cfg, sys.argv[1], sys.argv[2], ray=False)
    assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "Ray imported"
    print("LOSS", repr(result.metrics["train/loss"]))
""")


def _first_epoch_loss(uri: str, run_id: str) -> float:
    history = MlflowClient(uri).get_metric_history(run_id, "train/loss")
    return next(m.value for m in history if m.step == 1)


@pytest.mark.slow
def test_the_plain_loop_imports_no_ray_and_matches_the_ray_train_launch(tmp_path, ray_joined):
    """The pretraining loop as a plain process (no Ray module imported) and as a one-worker
    Ray Train run (on the session's cluster, this process its driver), same seed: the same
    first-epoch loss."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN, uri, str(tmp_path / "plain"), *ONE_EPOCH],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    plain_loss = float(re.search(r"LOSS (\S+)", plain.stdout)[1])

    from byol_ray.core.config import validate
    from byol_ray.core.presets import preset_config
    from byol_ray.jobs.pretrain.driver import run_pretraining

    cfg = validate(preset_config("cpu-mini", ONE_EPOCH))
    result = run_pretraining(cfg, uri, str(tmp_path / "ray"))
    assert _first_epoch_loss(uri, result.run_id) == pytest.approx(plain_loss, rel=1e-5)
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("byol-ray").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]


def _newest_manifest_epoch(storage: Path) -> int | None:
    """The epoch of the newest complete-looking checkpoint Tune persisted for the trial."""
    newest = None
    for manifest in storage.rglob(CHECKPOINT_MANIFEST):
        with suppress(OSError, ValueError):  # being written
            data = json.loads(manifest.read_text())
            if newest is None or data["time"] > newest[0]:
                newest = (data["time"], int(data["metrics"]["epoch"]))
    return newest and newest[1]


def _sweep(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "sweeps" / "ema_decay.py"), "--preset", "cpu-mini",
         "--only", "byol-tau_base=0.99-s0", "--set", "scaling.num_workers=1",
         "--set", "train.epochs=16", "--set", "train.checkpoint_every=2",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", str(tmp_path / "ray"), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_a_one_worker_trial_runs_in_its_own_process_and_resumes_from_its_checkpoint(tmp_path,
                                                                                   ray_address):
    """A one-worker sweep trial runs its loop in the Tune trial's process (no Train worker
    group), its checkpoints persisted by Tune; its driver SIGKILLed once a checkpoint is
    there (with the local cluster it started: nothing of the trial writes after the kill),
    `--resume` (joining the session's cluster) continues the trial from that checkpoint and
    logs each epoch once."""
    storage = tmp_path / "ray"
    driver = _sweep(tmp_path)
    console = Lines(driver)
    console.wait_until("a checkpoint persisted", lambda: _newest_manifest_epoch(storage))
    kill_session(driver)
    driver.wait(timeout=60)
    persisted = _newest_manifest_epoch(storage)
    assert not list(storage.rglob("checkpoint_manager_snapshot.json"))  # no Train run

    resumed = _sweep(tmp_path, "--resume", "--address", ray_address)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-4000:]
    epochs = [int(e) for e in re.findall(r"resumed from checkpoint after epoch (\d+)", out)]
    assert epochs == [persisted], out[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (trial,) = [r for r in client.search_runs(
        [client.get_experiment_by_name("ema_decay/cpu-mini").experiment_id])
        if r.data.tags.get("role") == "trial"]
    assert trial.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(trial.info.run_id, "epoch")) == list(
        range(17))
