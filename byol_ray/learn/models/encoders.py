"""Encoders f: images (B, 3, H, W) -> representations (B, D) [P §3.3]."""

from __future__ import annotations

import torchvision
from torch import nn

from byol_ray.core.config import ModelConfig
from byol_ray.learn.models.norms import normalise_encoder


def _block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    return [*layers, nn.MaxPool2d(2)] if pool else layers


def small_cnn(width: int = 32) -> nn.Sequential:
    """A 3-block CNN (width -> 2 width -> 4 width channels) with global average pooling.

    Its representation has D = 4 * width. Fast enough to pretrain on CPU on 16-32 px images,
    for demos and tests; any input of at least 8x8 pixels works (two 2x max-pools, then a
    global pool).
    """
    return nn.Sequential(
        *_block(3, width, pool=True),
        *_block(width, 2 * width, pool=True),
        *_block(2 * width, 4 * width, pool=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _resnet(name: str, cifar_stem: bool) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, name)(weights=None)
    dim = net.fc.in_features
    net.fc = nn.Identity()  # the representation y is the pooled feature [P §3.3]
    if cifar_stem:  # small images: keep resolution in the stem (SimCLR/solo-learn CIFAR stem)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    return net, dim


def build_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    """Randomly initialised encoder named by `cfg.encoder`, and its feature size D.

    `resnet18`/`resnet50` are torchvision's (no pretrained weights, `fc` removed, D = 512 /
    2048), optionally with the 3x3 stride-1 CIFAR stem; `small_cnn` is for CPU demos. Their
    batch norms are then replaced as `cfg.encoder_norm` says (`norms.normalise_encoder`).
    """
    if cfg.encoder == "small_cnn":
        return normalise_encoder(small_cnn(cfg.width), cfg.encoder_norm), 4 * cfg.width
    if cfg.encoder in ("resnet18", "resnet50"):
        net, dim = _resnet(cfg.encoder, cfg.cifar_stem)
        return normalise_encoder(net, cfg.encoder_norm), dim
    raise ValueError(f"unknown encoder {cfg.encoder!r}; expected small_cnn, resnet18 or resnet50")
