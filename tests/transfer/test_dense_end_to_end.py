"""`byol-ray eval segment|detect` on a short cpu-mini pretraining run and on the baselines,
with real Ray and MLflow on a test-written VOC folder: each lands in an MLflow run linked to
what it evaluates, with its metrics, and `byol-ray tables` shows them as Table 4a. Bad input
exits with status 2 before any worker starts."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from voc_synthetic import write_voc

from byol_ray.cli.main import main, resolve_config

pytestmark = pytest.mark.slow
FAST = ["--set", "segment.iterations=6", "--set", "detect.iterations=6"]  # the path only


@pytest.fixture(scope="module")
def setting(tmp_path_factory, ray_joined):
    """(tracking URI, pretraining run id, VOC root, tmp folder), this process a driver of the
    session's local Ray cluster (tests/conftest.py)."""
    from byol_ray.jobs.pretrain.driver import run_pretraining

    tmp = tmp_path_factory.mktemp("dense")
    voc = write_voc(tmp / "voc", "2012", {"train": 8, "val": 4})
    write_voc(voc, "2007", {"trainval": 8, "test": 4})
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", ["train.epochs=1", "eval.eval_every=0"])
    return uri, run_pretraining(cfg, uri, storage_path=str(tmp / "ray")).run_id, voc, tmp


def _eval(setting, task: str, ref: str, *extra: str) -> int:
    uri, _, voc, tmp = setting
    return main(["eval", task, "--run", ref, "--tracking-uri", uri, "--storage",
                 str(tmp / "ray"), "--set", f"{task}.root={voc}", *FAST, *extra])


def _latest_eval_run(uri: str, protocol: str):
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.role = 'eval' AND tags.protocol = '{protocol}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0]


@pytest.mark.parametrize("task, metric", [("segment", "eval_segment/val_miou"),
                                          ("detect", "eval_detect/test_ap50")])
def test_on_a_pretraining_run_lands_in_a_linked_run(setting, capsys, task, metric):
    uri, pretrain_id, _, _ = setting
    assert _eval(setting, task, pretrain_id) == 0
    run = _latest_eval_run(uri, task)
    assert run.info.status == "FINISHED"
    assert run.data.tags["pretrain_run_id"] == pretrain_id
    assert run.data.tags["mlflow.parentRunId"] == pretrain_id
    assert run.data.tags["method"] == "byol"
    assert 0 <= run.data.metrics[metric] <= 100 and "train/loss" in run.data.metrics
    printed = capsys.readouterr().out
    assert metric.split("/")[1] in printed and run.info.run_id in printed


def test_random_init_baseline_runs_without_a_pretraining_run(setting):
    uri = setting[0]
    assert _eval(setting, "segment", "random-init", "--preset", "cpu-mini",
                 "--set", "scaling.num_workers=1") == 0  # one worker: the path, quicker
    run = _latest_eval_run(uri, "segment")
    assert run.data.tags["pretrain_run_id"] == "random-init"
    assert run.data.tags["method"] == "random_init"
    assert "mlflow.parentRunId" not in run.data.tags
    assert "eval_segment/val_miou" in run.data.metrics


def test_tables_show_them_as_table_4a(setting):
    """After the runs above (this module's order): `byol-ray tables` gains Table 4a."""
    uri, _, _, tmp = setting
    assert main(["tables", "--tracking-uri", uri, "--preset", "cpu-mini", "--out",
                 str(tmp / "tables")]) == 0
    text = (tmp / "tables" / "table_4a.md").read_text()
    assert "| BYOL | " in text and "77.5" in text and "76.3" in text
    byol = next(line for line in text.splitlines() if line.startswith("| BYOL |"))
    assert byol.count("(n=1)") >= 2  # AP50 and mIoU of the one pretraining run
    assert "random-init" in text


@pytest.mark.parametrize("args, expected", [
    (["--set", "segment.batch_size=7"], "segment.batch_size: 7 is not divisible"),
    (["--set", "segment.year=2010"], "has no VOCdevkit/VOC2010 folder"),
    (["--run-ref", "0" * 32], "--run: " + "0" * 32),
    (["--run-ref", "supervised", "--preset", "cpu-mini", "--set", "model.encoder=resnet18",
      "--set", "model.supervised_weights=/nonexistent/r18.pth"],
     "model.supervised_weights: /nonexistent/r18.pth does not exist"),
])
def test_bad_input_exits_2_naming_the_field(setting, capsys, args, expected):
    uri, pretrain_id, voc, tmp = setting
    ref = pretrain_id
    if args[0] == "--run-ref":
        ref, args = args[1], args[2:]
    status = main(["eval", "segment", "--run", ref, "--tracking-uri", uri, "--set",
                   f"segment.root={voc}", *args])
    assert status == 2
    assert expected in capsys.readouterr().err
