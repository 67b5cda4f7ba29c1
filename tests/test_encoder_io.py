"""Trained weights as files: round trip, torchvision keys, refusing damaged files and bad refs,
and the MLflow run / Model Registry path (a real sqlite store; no Ray)."""

import pytest
import torch
import torchvision
from mlflow.tracking import MlflowClient

from byol_ray import load_encoder
from byol_ray.cli.main import resolve_config
from byol_ray.core.config import ConfigError
from byol_ray.learn.methods import build_method
from byol_ray.runtime.tracking.run import Run
from byol_ray.runtime.tracking.store import experiment_id_for
from byol_ray.runtime.weights import WeightsError, read_part, write_weights


@pytest.fixture
def saved(tmp_path):
    """A cpu-mini BYOL method with non-default BN statistics, saved to tmp_path/weights."""
    torch.manual_seed(3)
    cfg = resolve_config("cpu-mini", [])
    method = build_method(cfg)
    method.train()
    method.encoder(torch.randn(8, 3, 16, 16))  # moves BN running statistics off their init
    return method, write_weights(method, cfg, tmp_path / "weights")


def _same_features(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    images = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(images), b.eval()(images))


def test_round_trip_gives_the_same_features_for_every_part(saved):
    method, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml", "encoder.safetensors", "manifest.json", "projector.safetensors",
        "target.safetensors"]
    encoder = load_encoder(str(folder))
    assert type(encoder) is torch.nn.Sequential and not encoder.training
    assert _same_features(encoder, method.encoder)
    assert _same_features(load_encoder(str(folder / "encoder.safetensors")), method.encoder)
    projector = read_part(folder, "projector")
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert torch.equal(projector(x), method.projector.eval()(x))


def test_a_truncated_or_altered_file_is_refused_clearly(saved):
    _, folder = saved
    path = folder / "encoder.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"--run: .*encoder.safetensors is \d+ bytes, the "
                                            r"manifest says \d+: truncated"):
        load_encoder(str(folder))
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(WeightsError, match="fails its sha256 check"):
        load_encoder(str(folder))
    (folder / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="no manifest.json"):
        load_encoder(str(folder))


def test_a_ref_that_names_nothing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="neither a folder nor an MLflow run id"):
        load_encoder(str(tmp_path / "nowhere"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(WeightsError, match="not found"):
        load_encoder("0" * 32, uri)
    with pytest.raises(WeightsError, match="not found"):
        load_encoder("models:/nothing/1", uri)


def test_resnet_encoder_keeps_torchvision_keys(tmp_path):
    cfg = resolve_config("cifar10", ["method.name=random_init"], check_paths=False)
    folder = write_weights(build_method(cfg), cfg, tmp_path / "w")
    encoder = load_encoder(str(folder))
    assert isinstance(encoder, torchvision.models.ResNet)
    reference = set(torchvision.models.resnet18().state_dict()) - {"fc.weight", "fc.bias"}
    assert set(encoder.state_dict()) == reference


def test_weights_from_a_run_and_from_the_model_registry(saved, tmp_path):
    method, folder = saved
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id_for(client, "x")).info.run_id
    Run(uri, run_id).log_weights(folder)
    version = Run(uri, run_id).register_weights("digits-encoder")
    for ref in (run_id, f"runs:/{run_id}", f"runs:/{run_id}/weights/encoder.safetensors",
                f"models:/digits-encoder/{version}"):
        assert _same_features(load_encoder(ref, uri), method.encoder), ref
    with pytest.raises(WeightsError, match="not found"):
        load_encoder(f"runs:/{run_id}/elsewhere", uri)
