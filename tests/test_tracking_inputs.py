"""What the MLflow UI shows of a run: its experiment opens on the runs (the experiment kind
tag), and each run names its dataset (a dataset input) and the command line it came from."""

from __future__ import annotations

import json
import shlex
import sys

from mlflow.tracking import MlflowClient

from byol_ray.core.presets import get_preset
from byol_ray.runtime.tracking.run import Run
from byol_ray.runtime.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG


def test_a_run_carries_its_experiment_kind_dataset_input_and_source(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = get_preset("cpu-mini")
    run = Run.start(cfg, uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"

    record = client.get_run(run.run_id)
    [found] = record.inputs.dataset_inputs
    dataset = found.dataset
    assert dataset.name == cfg.data.dataset and dataset.source == "bundled" and dataset.digest
    sizes = json.loads(dataset.profile)
    assert sizes["pretrain_images"] > sizes["test_images"] > 0 and sizes["num_classes"] == 10
    assert {t.key: t.value for t in found.tags} == {"mlflow.data.context": "train"}
    assert record.data.tags["mlflow.source.name"] == shlex.join(sys.argv)
    assert record.data.tags["mlflow.source.type"] == "LOCAL"

    run.describe(cfg)  # a resumed sweep describes its runs again: still one dataset input
    assert len(client.get_run(run.run_id).inputs.dataset_inputs) == 1


def test_an_experiment_made_before_the_kind_tag_gets_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("byol-ray")
    Run.start(get_preset("cpu-mini"), uri, describe=False)
    assert client.get_experiment_by_name("byol-ray").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
