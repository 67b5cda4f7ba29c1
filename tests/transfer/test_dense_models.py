"""The dense heads on each kind of encoder: shapes, strides, frozen parts, supervised weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from byol_ray.core.config import ConfigError, ModelConfig
from byol_ray.learn.models.dense import (
    detection_model,
    feature_stages,
    segmentation_model,
    supervised_encoder,
)
from byol_ray.learn.models.encoders import build_encoder, small_cnn


def test_stages_of_each_encoder():
    assert feature_stages(small_cnn(8)) == [("2", 8, 1), ("6", 16, 2), ("10", 32, 4)]
    resnet18, _ = build_encoder(ModelConfig(encoder="resnet18"))
    assert feature_stages(resnet18) == [("layer1", 64, 4), ("layer2", 128, 8),
                                        ("layer3", 256, 16), ("layer4", 512, 32)]
    cifar, _ = build_encoder(ModelConfig(encoder="resnet18", cifar_stem=True))
    assert [stride for *_, stride in feature_stages(cifar)] == [1, 2, 4, 8]


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet50"])
def test_segmentation_logits_cover_the_input(encoder):
    torch.manual_seed(0)
    net, _ = build_encoder(ModelConfig(encoder=encoder, width=8))
    model = segmentation_model(net, num_classes=21).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))["out"]
    assert out.shape == (2, 21, 64, 64)
    if encoder == "resnet50":  # the paper's FCN: conv5 dilated, total stride 16 [P App. D.4]
        with torch.no_grad():
            assert model.backbone(torch.randn(1, 3, 64, 64))["out"].shape[-1] == 4


def test_detection_trains_heads_on_a_frozen_small_cnn():
    torch.manual_seed(0)
    model = detection_model(small_cnn(8), num_classes=21, min_size=(64,), max_size=64,
                            freeze_encoder=True)
    assert not any(p.requires_grad for p in model.backbone.body.parameters())
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([8])},
               {"boxes": torch.tensor([[10.0, 2.0, 60.0, 20.0]]), "labels": torch.tensor([1])}]
    losses = model.train()(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(
        losses)
    sum(losses.values()).backward()
    with torch.no_grad():
        detections = model.eval()(images)
    assert len(detections) == 2 and detections[0]["boxes"].shape[1] == 4


def test_supervised_weights_load_from_disk_and_their_absence_is_named(tmp_path):
    cfg = ModelConfig(encoder="resnet18", supervised_weights=str(tmp_path / "r18.pth"))
    with pytest.raises(ConfigError, match="r18.pth does not exist; download https://") as error:
        supervised_encoder(cfg)
    assert error.value.field == "model.supervised_weights"
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    encoder = supervised_encoder(cfg)
    saved = torch.load(tmp_path / "r18.pth", weights_only=True)
    assert torch.equal(encoder.state_dict()["layer4.1.conv2.weight"],
                       saved["layer4.1.conv2.weight"])
    with pytest.raises(ConfigError, match="not model.encoder=small_cnn"):
        supervised_encoder(ModelConfig(encoder="small_cnn"))
