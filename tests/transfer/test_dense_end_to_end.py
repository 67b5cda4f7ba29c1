"""`segment` and `detect` on a short cpu-mini pretraining run and on the baselines, with real
Ray and MLflow on a test-written VOC folder: each lands in an MLflow run linked to what it
evaluates, with its metrics."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from voc_synthetic import write_voc

from byol_ray import load_encoder
from byol_ray.cli import resolve_config
from byol_ray.config import ConfigError
from byol_ray.protocols.dense import baseline_encoder, preflight, run_dense

pytestmark = pytest.mark.slow
FAST = ["segment.iterations=6", "detect.iterations=6"]  # the path, not the scores


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(tracking URI, pretraining run id, VOC root, tmp folder) with Ray up."""
    import ray

    from byol_ray.train.trainer import run_pretraining

    tmp = tmp_path_factory.mktemp("dense")
    voc = write_voc(tmp / "voc", "2012", {"train": 8, "val": 4})
    write_voc(voc, "2007", {"trainval": 8, "test": 4})
    ray.init(num_cpus=2, include_dashboard=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", ["train.epochs=1", "eval.eval_every=0"])
    yield uri, run_pretraining(cfg, uri, storage_path=str(tmp / "ray")).run_id, voc, tmp
    ray.shutdown()


@pytest.mark.parametrize("task, metric", [("segment", "eval_segment/val_miou"),
                                          ("detect", "eval_detect/test_ap50")])
def test_on_a_pretraining_run_lands_in_a_linked_run(setting, task, metric):
    uri, pretrain_id, voc, tmp = setting
    cfg = resolve_config("cpu-mini", [f"{task}.root={voc}", *FAST])
    result = run_dense(cfg, task, load_encoder(pretrain_id, uri), pretrain_id, pretrain_id,
                       uri, storage_path=str(tmp / "ray"))
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["pretrain_run_id"] == pretrain_id
    assert run.data.tags["mlflow.parentRunId"] == pretrain_id
    assert run.data.tags["protocol"] == task and run.data.tags["role"] == "eval"
    assert 0 <= run.data.metrics[metric] <= 100 and metric in result.metrics
    assert "train/loss" in run.data.metrics
    assert metric.split("/")[1] in result.report


def test_random_init_baseline_runs_without_a_pretraining_run(setting):
    uri, _, voc, tmp = setting
    cfg = resolve_config("cpu-mini", [f"segment.root={voc}", *FAST])
    result = run_dense(cfg, "segment", baseline_encoder("random-init", cfg), "random-init",
                       None, uri, storage_path=str(tmp / "ray"))
    tags = MlflowClient(uri).get_run(result.run_id).data.tags
    assert tags["pretrain_run_id"] == "random-init" and "mlflow.parentRunId" not in tags
    assert "eval_segment/val_miou" in result.metrics


def test_bad_settings_stop_before_any_worker(tmp_path):
    voc = write_voc(tmp_path, "2012", {"train": 2, "val": 1})
    with pytest.raises(ConfigError, match="segment.batch_size: 7 is not divisible"):
        preflight(resolve_config("cpu-mini", [f"segment.root={voc}", "segment.batch_size=7"]),
                  "segment")
    with pytest.raises(ConfigError, match="detect.root: .* has no VOCdevkit/VOC2007"):
        preflight(resolve_config("cpu-mini", [f"detect.root={voc}"]), "detect")


def test_tables_show_them_as_table_4a(setting):
    """After the runs above (this module's order): `byol-ray tables` gains Table 4a."""
    from byol_ray.tables.render import generate_report

    uri, _, _, tmp = setting
    report = generate_report(uri, tmp / "tables", preset="cpu-mini")
    shown = report.tables["table_4a"].display.set_index("encoder")
    assert "(n=1)" in shown.loc["BYOL", "ours: AP50"]
    assert "(n=1)" in shown.loc["BYOL", "ours: mIoU"]
    assert "(n=1)" in shown.loc["random-init", "ours: mIoU"]
    assert shown.loc["BYOL", "paper: AP50"] == "77.5"
    assert (tmp / "tables" / "table_4a.md").is_file()
