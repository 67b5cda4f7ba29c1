"""On one short cpu-mini pretraining run (real Ray, real MLflow): the weights it leaves load back
as the encoder training ended with, and every evaluation protocol runs on it and lands in its
own MLflow run linked to it. Protocol settings are cut to seconds (2 learning rates, few
epochs); the sweep's --eval runs a protocol inside a trial."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from byol_ray import load_encoder
from byol_ray.cli.main import main, resolve_config
from byol_ray.learn.methods import build_method

pytestmark = pytest.mark.slow
QUICK = ["--set", "protocol.linear_epochs=3", "--set", "protocol.linear_lrs=[0.4,0.05]",
         "--set", "protocol.finetune_epochs=3", "--set", "protocol.finetune_lrs=[0.05]"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, ray_joined):
    """(tracking URI, run id, final checkpoint folder, config, tmp folder) of a 2-epoch run,
    on the session's local Ray cluster (tests/conftest.py)."""
    from byol_ray.jobs.pretrain.driver import run_pretraining

    tmp = tmp_path_factory.mktemp("pretrain")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", ["train.epochs=2", "eval.eval_every=0",
                                      "scaling.cpus_per_worker=0.5"])
    result = run_pretraining(cfg, uri, storage_path=str(tmp / "ray"))
    return uri, result.run_id, Path(result.checkpoint_path), cfg, tmp


def _eval(pretrained, capsys, *args) -> tuple[str, object]:
    """Run `byol-ray eval ARGS`; its output and the one new evaluation run."""
    uri, run_id, _, _, tmp = pretrained
    client = MlflowClient(uri)
    before = {r.info.run_id for r in client.search_runs(_experiments(client))}
    assert main(["eval", args[0], *QUICK, *args[1:], "--tracking-uri", uri,  # args' --set last
                 "--storage", str(tmp / "ray")]) == 0
    out = capsys.readouterr().out
    new = [r for r in client.search_runs(_experiments(client)) if r.info.run_id not in before]
    assert len(new) == 1 and new[0].info.status == "FINISHED"
    assert f"MLflow run {new[0].info.run_id}" in out
    return out, new[0]


def _experiments(client) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


def _artifact(uri: str, run_id: str, name: str):
    from mlflow.artifacts import download_artifacts

    return json.loads(Path(download_artifacts(run_id=run_id, artifact_path=name,
                                              tracking_uri=uri)).read_text())


def test_the_run_s_weights_give_the_features_training_ended_with(pretrained):
    uri, run_id, checkpoint, cfg, _ = pretrained
    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    trained = build_method(cfg)
    trained.load_state_dict(state["method"])
    assert state["epoch"] == cfg.train.epochs
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained.encoder.eval()(images)
        assert torch.equal(load_encoder(run_id, uri)(images), expected)


def test_linear_chooses_the_rate_on_held_out_train_images_and_reports_test(pretrained, capsys):
    uri, run_id, _, _, _ = pretrained
    out, run = _eval(pretrained, capsys, "linear", "--run", run_id)
    tags, m = run.data.tags, run.data.metrics
    assert tags["pretrain_run_id"] == run_id and tags["mlflow.parentRunId"] == run_id
    assert tags["protocol"] == "linear" and tags["role"] == "eval"
    val = {lr: m[f"eval_linear/val_top1_lr_{lr}"] for lr in ("0.4", "0.05")}
    best = max(val, key=val.get)
    assert m["eval_linear/lr"] == float(best) and m["eval_linear/val_top1"] == val[best]
    assert 0 <= m["eval_linear/test_top1"] <= 100 and m["eval_linear/test_images"] == 360
    held_out = _artifact(uri, run.info.run_id, "linear_holdout.json")["held_out"]
    assert len(held_out) == m["eval_linear/val_images"] == 287
    assert "chosen on a held-out part of train (287 images" in out and "test top-1" in out


def test_finetune_chooses_its_rate_on_held_out_labels_and_runs_on_random_init(pretrained,
                                                                              capsys):
    uri, run_id, _, _, _ = pretrained
    out, run = _eval(pretrained, capsys, "finetune", "--run", run_id, "--fraction", "0.1",
                     "--set", "protocol.finetune_lrs=[0.05,0.01]")
    m = run.data.metrics
    assert run.data.tags["protocol"] == "finetune_10pct"
    assert run.data.tags["mlflow.parentRunId"] == run_id
    assert run.data.params["protocol.finetune_lrs"] == "[0.05, 0.01]"
    val = {lr: m[f"eval_finetune_10pct/val_top1_lr_{lr}"] for lr in ("0.05", "0.01")}
    best = max(val, key=val.get)
    assert m["eval_finetune_10pct/lr"] == float(best)
    assert m["eval_finetune_10pct/val_top1"] == val[best]
    assert 0 <= m["eval_finetune_10pct/test_top1"] <= 100
    subset = _artifact(uri, run.info.run_id, "finetune_10pct_subset.json")["indices"]
    assert len(subset) == m["eval_finetune_10pct/train_images"] == 140  # the refit: all of it
    # The choice scored the held-out labelled train images, 30 of them, never the 360 test ones.
    held_out = _artifact(uri, run.info.run_id, "finetune_10pct_holdout.json")["held_out"]
    assert set(held_out) < set(subset) and len(held_out) == m["eval_finetune_10pct/val_images"]
    assert len(held_out) == 30 and m["eval_finetune_10pct/test_images"] == 360
    for top1 in val.values():
        assert round(top1 * 30 / 100, 6).is_integer()  # a share of 30 images, not of 360
    assert "chosen on a held-out part of the label subset (30 images" in out

    # The random-init baseline: what is checked is how it is tracked, not what it learns.
    _, baseline = _eval(pretrained, capsys, "finetune", "--run", "random-init",
                        "--preset", "cpu-mini", "--set", "scaling.cpus_per_worker=0.5",
                        "--set", "protocol.finetune_epochs=1")
    assert baseline.data.tags["pretrain_run_id"] == "random-init"
    assert baseline.data.tags["method"] == "random_init"
    assert "eval_finetune_1pct/test_top1" in baseline.data.metrics  # one rate: no choice
    assert "eval_finetune_1pct/val_top1" not in baseline.data.metrics


def _write_image_folder(root: Path) -> None:
    """Two classes (dark / bright squares with noise), PNG files in train/ and val/."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for c, name in enumerate(("dark", "bright")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 100, (20, 20, 3)) + 130 * c
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")


def test_transfer_fine_tunes_the_digits_encoder_on_an_image_folder(pretrained, capsys):
    uri, run_id, _, _, tmp = pretrained
    _write_image_folder(tmp / "folder")
    out, run = _eval(pretrained, capsys, "transfer", "--run", run_id, "--mode", "finetune",
                     "--fraction", "0.5", "--set", "data.dataset=imagefolder",
                     "--set", f"data.root={tmp / 'folder'}")
    assert run.data.tags["protocol"] == "transfer_finetune_50pct"
    assert run.data.tags["eval_dataset"] == "imagefolder"
    assert run.data.tags["pretrain_dataset"] == "digits"
    assert run.data.metrics["eval_transfer_finetune_50pct/test_images"] == 8
    assert "pretrained on digits) on imagefolder" in out


def test_bad_eval_input_exits_2_before_any_job(pretrained, capsys, tmp_path):
    uri, run_id, _, _, _ = pretrained
    assert main(["eval", "transfer", "--run", run_id, "--tracking-uri", uri]) == 2
    assert "transfer needs another dataset" in capsys.readouterr().err
    assert main(["eval", "linear", "--run", "f" * 32, "--tracking-uri", uri]) == 2
    assert "--run: " + "f" * 32 + ": not found" in capsys.readouterr().err
    assert main(["eval", "linear", "--run", "random-init"]) == 2
    assert "--preset: needed" in capsys.readouterr().err
    # 1% of digits is one image per class: no rate of the preset's grid can be chosen
    assert main(["eval", "finetune", "--run", run_id, "--tracking-uri", uri]) == 2
    assert "protocol.fraction: 0.01 gives 1 labelled image per class" in capsys.readouterr().err
    assert main(["sweep", "ema_decay", "--preset", "cpu-mini", "--only", "random-init",
                 "--eval", "finetune", "--tracking-uri", uri]) == 2
    assert "protocol.fraction: 0.01" in capsys.readouterr().err


def test_a_sweep_s_eval_runs_inside_its_trial_and_is_not_repeated(pretrained, capsys):
    from byol_ray.jobs.protocols.run import evaluate_trial

    uri, _, _, _, tmp = pretrained
    assert main(["sweep", "ema_decay", "--preset", "cpu-mini", "--only", "random-init",
                 "--eval", "finetune", "--set", "protocol.finetune_epochs=1",
                 "--set", "protocol.finetune_lrs=[0.05]",
                 "--tracking-uri", uri, "--storage", str(tmp / "ray")]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ema_decay/cpu-mini").experiment_id
    trial = client.search_runs([experiment], "tags.role = 'trial'")[0]
    evals = client.search_runs([experiment], "tags.role = 'eval'")
    assert trial.info.status == "FINISHED" and len(evals) == 1
    assert evals[0].data.tags["mlflow.parentRunId"] == trial.info.run_id
    assert evals[0].data.tags["protocol"] == "finetune_1pct"
    assert evals[0].data.params["protocol.finetune_epochs"] == "1"  # the sweep's --set
    capsys.readouterr()
    evaluate_trial(["finetune"], trial.info.run_id, uri, str(tmp / "ray"), [])  # a resume
    assert "finished before" in capsys.readouterr().out
    assert len(client.search_runs([experiment], "tags.role = 'eval'")) == 1
