"""On one short cpu-mini pretraining run (real Ray, real MLflow): the weights it leaves load back
as the encoder training ended with, and every evaluation protocol runs on it."""

from pathlib import Path

import pytest
import torch

from byol_ray import load_encoder
from byol_ray.cli import resolve_config
from byol_ray.methods import build_method

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(tracking URI, run id, final checkpoint folder, config) of a 2-epoch cpu-mini run."""
    import ray

    from byol_ray.train.trainer import run_pretraining

    tmp = tmp_path_factory.mktemp("pretrain")
    ray.init(num_cpus=2, include_dashboard=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = resolve_config("cpu-mini", ["train.epochs=2", "eval.eval_every=0"])
    result = run_pretraining(cfg, uri, storage_path=str(tmp / "ray"))
    yield uri, result.run_id, Path(result.checkpoint_path), cfg
    ray.shutdown()


def test_the_run_s_weights_give_the_features_training_ended_with(pretrained):
    uri, run_id, checkpoint, cfg = pretrained
    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    trained = build_method(cfg)
    trained.load_state_dict(state["method"])
    assert state["epoch"] == cfg.train.epochs
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained.encoder.eval()(images)
        assert torch.equal(load_encoder(run_id, uri)(images), expected)
