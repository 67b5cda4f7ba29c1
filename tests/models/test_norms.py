"""Encoder and head normalisations (learn/models/norms.py): each trains a step, saves and loads
back as what it is, and only batch norm holds batch statistics (so only it becomes SyncBN)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from byol_ray import load_encoder
from byol_ray.cli.main import resolve_config
from byol_ray.core.config import ENCODER_NORMS, HEAD_NORMS, ConfigError, validate
from byol_ray.learn.methods import build_method
from byol_ray.learn.metrics import embedding_std, is_collapsed
from byol_ray.learn.models import build_encoder
from byol_ray.learn.models.norms import DataInitAffine, WSConv2d
from byol_ray.learn.optim import build_optimizer
from byol_ray.runtime.weights import read_part, write_weights

ENCODERS = {"small_cnn": [], "resnet18": ["model.cifar_stem=true"]}
STEPS = 30  # the tiny run: BYOL without BN has collapsed by then (std ~0.002 at 60 steps)


def _config(encoder: str, norm: str, head: str = "batch", method: str = "byol"):
    return resolve_config("cpu-mini", [f"model.encoder={encoder}", *ENCODERS[encoder],
                                       f"model.encoder_norm={norm}",
                                       f"model.projector_norm={head}",
                                       f"model.predictor_norm={head}", f"method.name={method}"])


def _features(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(images)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("norm", ENCODER_NORMS)
def test_each_encoder_norm_trains_a_step_and_loads_back_as_what_it_is(encoder, norm, tmp_path):
    torch.manual_seed(0)
    cfg = _config(encoder, norm, head={"batch": "batch", "group_ws": "group"}.get(norm, "none"))
    method = build_method(cfg).train()
    optimizer = build_optimizer(method, cfg.optim, cfg.optim.lr(cfg.data.batch_size))
    images = torch.randn(2, 8, 3, 16, 16)
    before = [p.detach().clone() for p in method.encoder.parameters()]
    loss = method(images[0], images[1])["loss"]
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters(),
                                                     strict=True))
    kinds = {type(m) for m in method.encoder.modules()}
    assert any(issubclass(k, _BatchNorm) for k in kinds) == (norm == "batch")
    assert (WSConv2d in kinds, nn.GroupNorm in kinds) == (norm == "group_ws",) * 2
    assert (DataInitAffine in kinds) == (norm == "affine_init")

    loaded = load_encoder(str(write_weights(method, cfg, tmp_path / "weights")))
    assert [type(m) for m in loaded.modules()] == [type(m) for m in method.encoder.modules()]
    x = torch.randn(5, 3, 16, 16)
    assert torch.equal(_features(loaded, x), _features(method.encoder, x))
    # the evaluation protocols' build: a fresh encoder of the config, then the state_dict
    rebuilt = build_encoder(cfg.model)[0]
    rebuilt.load_state_dict(method.encoder.state_dict())
    assert torch.equal(_features(rebuilt, x), _features(method.encoder, x))


@pytest.mark.parametrize("head", HEAD_NORMS)
def test_each_head_norm_saves_and_loads_back(head, tmp_path):
    cfg = _config("small_cnn", "batch", head)
    method = build_method(cfg).train()
    method(torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16))["loss"].backward()
    projector = read_part(write_weights(method, cfg, tmp_path / "weights"), "projector")
    expected = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "group": nn.GroupNorm,
                "none": nn.Identity}[head]
    assert type(projector[1]) is expected and type(method.predictor[1]) is expected
    x = torch.randn(4, 64)
    assert torch.equal(_features(projector, x), _features(method.projector, x))


def test_only_batch_norm_becomes_sync_batch_norm():
    method = build_method(_config("resnet18", "group_ws", "group"))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    assert not any(isinstance(m, _BatchNorm) for m in converted.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in converted.modules()) > 20


def test_the_data_dependent_affine_whitens_its_first_batch_only():
    layer = DataInitAffine(3).train()
    x = torch.randn(16, 3, 4, 4) * 5 + 2
    y = layer(x)
    assert y.mean((0, 2, 3)).abs().max() < 1e-4 and (y.std((0, 2, 3)) - 1).abs().max() < 0.05
    weight = layer.weight.detach().clone()
    layer(torch.randn(16, 3, 4, 4))  # later batches use the learned values
    assert torch.equal(layer.weight, weight) and bool(layer.initialised)


def test_weight_standardised_convolution_has_zero_mean_unit_variance_filters():
    conv = WSConv2d(3, 4, 3, bias=False)
    nn.init.normal_(conv.weight, 3.0, 2.0)
    x = torch.randn(1, 3, 3, 3)
    var, mean = torch.var_mean(conv.weight, dim=(1, 2, 3), keepdim=True, correction=0)
    reference = nn.functional.conv2d(x, (conv.weight - mean) / torch.sqrt(var + 1e-5))
    assert torch.allclose(conv(x), reference, atol=1e-5)


@pytest.mark.parametrize(("key", "value"), [("model.encoder_norm", "layer"),
                                            ("model.projector_norm", "group_ws"),
                                            ("model.predictor_norm", "bn")])
def test_a_norm_not_allowed_names_the_field_and_the_choices(key, value):
    with pytest.raises(ConfigError, match=rf"{key}: '{value}' is not one of: "):
        validate(resolve_config("cpu-mini", [f"{key}={value}"]))


@pytest.mark.slow
def test_byol_with_no_normalisation_collapses_on_a_tiny_run():
    """BYOL with no BN anywhere on the small CNN, `STEPS` steps on fixed random images: what the
    existing detector (`eval/collapsed`: embedding std below `eval.collapse_threshold`) says
    of its projections, against BN everywhere trained the same way."""
    stds = {}
    for norm, head in (("none", "none"), ("batch", "batch")):
        torch.manual_seed(0)
        cfg = _config("small_cnn", norm, head)
        method = build_method(cfg).train()
        optimizer = build_optimizer(method, cfg.optim, cfg.optim.lr(cfg.data.batch_size))
        images = torch.rand(32, 3, 16, 16)
        for step in range(STEPS):
            noisy = [images + 0.1 * torch.randn_like(images) for _ in range(2)]
            optimizer.zero_grad()
            method(*noisy)["loss"].backward()
            optimizer.step()
            method.after_step(step + 1, STEPS)
        z = _features(nn.Sequential(method.encoder, method.projector), images)
        stds[norm] = embedding_std(z)
    assert stds["none"] < stds["batch"], stds
    threshold = _config("small_cnn", "none").eval.collapse_threshold
    print("embedding std:", stds, "threshold", threshold)
    assert is_collapsed(stds["none"], threshold), stds
