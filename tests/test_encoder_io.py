"""Trained weights as files: round trip, torchvision keys, refusing damaged files and bad refs,
and the MLflow run / Model Registry path (a real sqlite store; no Ray)."""

import json
import sys

import pytest
import torch
import torchvision
import yaml
from mlflow.tracking import MlflowClient

from byol_ray import load_encoder
from byol_ray.cli.main import main, resolve_config
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


def _edit_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest["parts"]["encoder"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file", ["../elsewhere/encoder.safetensors", "/etc/hostname",
                                  "sub/../../encoder.safetensors"])
def test_a_manifest_file_outside_the_folder_is_refused(saved, tmp_path, file):
    _, folder = saved
    _edit_manifest(folder, lambda entry: entry.update(file=file))
    with pytest.raises(WeightsError, match=r"parts.encoder.file is .*inside the weights folder"):
        load_encoder(str(folder))


def test_a_symlink_out_of_the_folder_is_refused(saved, tmp_path):
    _, folder = saved
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "encoder.safetensors").rename(outside)
    (folder / "encoder.safetensors").symlink_to(outside)
    with pytest.raises(WeightsError, match="is a symlink to .*outside the weights folder"):
        load_encoder(str(folder))


@pytest.mark.parametrize(("edit", "field"), [
    (lambda entry: entry.pop("file"), r"parts.encoder.file is missing"),
    (lambda entry: entry.update(bytes="12"), r"parts.encoder.bytes is '12'; expected a byte"),
    (lambda entry: entry.pop("sha256"), r"parts.encoder.sha256 is missing"),
])
def test_a_malformed_manifest_entry_names_its_field(saved, edit, field):
    _, folder = saved
    _edit_manifest(folder, edit)
    with pytest.raises(WeightsError, match=field):
        load_encoder(str(folder))


def test_a_malformed_manifest_is_exit_2_from_the_cli(saved, tmp_path, capsys):
    _, folder = saved
    (folder / "manifest.json").write_text('{"parts": {"encoder": []}}')
    with pytest.raises(WeightsError, match=r"field parts.encoder is not an object"):
        load_encoder(str(folder))
    (folder / "manifest.json").write_text('["parts"]')
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["eval", "linear", "--run", str(folder), "--tracking-uri", uri]) == 2
    assert "field parts is missing or not an object" in capsys.readouterr().err


MARKER_MODULE = '''
import os
from pathlib import Path

from byol_ray.learn.methods.byol import BYOL

Path(os.environ["BYOL_RAY_TEST_MARKER"]).write_text("imported")


class Marked(BYOL):
    """BYOL under another name: a method from outside the package."""
'''


def test_a_run_whose_config_names_an_outside_module_imports_it_only_with_trust_code(
        saved, tmp_path, monkeypatch):
    """A `runs:/` ref from a real sqlite store whose config.yaml names `module:Class`: without
    trust_code the module is never imported (its marker file is not written) and the error says
    how to opt in; with trust_code it is imported and the encoder loads."""
    method, folder = saved
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "marker_method.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("BYOL_RAY_TEST_MARKER", str(marker))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["method"]["name"] = "marker_method:Marked"
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id_for(client, "x")).info.run_id
    Run(uri, run_id).log_weights(folder)
    with pytest.raises(WeightsError, match=r"method.name is 'marker_method:Marked'.*"
                                           r"--trust-code \(trust_code=True"):
        load_encoder(f"runs:/{run_id}", uri)
    assert not marker.exists() and "marker_method" not in sys.modules
    try:
        assert _same_features(load_encoder(f"runs:/{run_id}", uri, trust_code=True),
                              method.encoder)
        assert marker.read_text() == "imported"
    finally:
        sys.modules.pop("marker_method", None)
