"""Encoders give (B, D) features of the advertised size; the MLP has the paper's layout."""

import pytest
import torch
from torch import nn

from byol_ray.core.config import ModelConfig
from byol_ray.learn.models import build_encoder, mlp


def _features(encoder: nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return encoder(torch.randn(batch, 3, size, size))


def test_resnet18_cifar_stem_on_32px():
    encoder, dim = build_encoder(ModelConfig(encoder="resnet18", cifar_stem=True))
    assert dim == 512
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert encoder.conv1.bias is None
    assert isinstance(encoder.maxpool, nn.Identity)
    assert isinstance(encoder.fc, nn.Identity)
    assert _features(encoder, 32).shape == (2, 512)


def test_resnet18_imagenet_stem_kept_without_cifar_stem():
    encoder, _ = build_encoder(ModelConfig(encoder="resnet18", cifar_stem=False))
    assert encoder.conv1.kernel_size == (7, 7)
    assert isinstance(encoder.maxpool, nn.MaxPool2d)


def test_resnet50_gives_2048():
    encoder, dim = build_encoder(ModelConfig(encoder="resnet50", cifar_stem=True))
    assert dim == 2048
    assert _features(encoder, 16).shape == (2, 2048)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_small_cnn_any_size(size):
    encoder, dim = build_encoder(ModelConfig(encoder="small_cnn"))
    assert dim == 128
    assert _features(encoder, size, batch=3).shape == (3, 128)


def test_small_cnn_trains_in_train_mode():
    encoder, _ = build_encoder(ModelConfig(encoder="small_cnn"))
    out = encoder(torch.randn(2, 3, 16, 16))
    out.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_unknown_encoder_raises():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder(ModelConfig(encoder="vit"))


def test_mlp_layout():
    head = mlp(8, 16, 4)
    kinds = [type(layer) for layer in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].in_features == 8 and head[0].out_features == 16
    assert head[3].out_features == 4
    assert head(torch.randn(5, 8)).shape == (5, 4)
