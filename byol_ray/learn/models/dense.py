"""Dense-prediction models on a byol-ray encoder: torchvision's FCN (segmentation) and Faster
R-CNN with FPN (detection), built around the encoder's own feature maps and weights.

Encoders are torchvision ResNets (`fc` removed, standard or CIFAR stem) or the small CNN of
`learn.models.encoders`. `feature_stages` finds their stages (the outputs of `layer1..4`, or
of the small CNN's three conv blocks) with channels and strides, so both heads are built the
same way for every encoder:

- segmentation: the last stage with torchvision's `FCNHead`, upsampled to the input; a
  Bottleneck ResNet's last stage is dilated (stride 1, dilation 2) as in the paper's FCN
  [P App. D.4] (total stride 16; BasicBlock ResNets cannot dilate and keep stride 32);
- detection: an FPN over the stages (ResNet: layer1..4 as in torchvision's
  `resnet_fpn_backbone`; small CNN: its last two blocks) plus a max-pooled level, anchors of
  8 x stride per level (32..512 on a ResNet: torchvision's defaults), batch norms frozen.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.segmentation.fcn import FCN, FCNHead
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from byol_ray.core.config import ConfigError, ModelConfig
from byol_ray.learn.data.datasets import IMAGENET_STATS
from byol_ray.learn.models.encoders import build_encoder


def feature_stages(encoder: nn.Module) -> list[tuple[str, int, int]]:
    """(child name, channels, stride) of each stage of `encoder`, shallow to deep."""
    if isinstance(encoder, ResNet):
        stride = encoder.conv1.stride[0] * (2 if isinstance(encoder.maxpool, nn.MaxPool2d) else 1)
        stages = []
        for i in range(1, 5):
            layer = getattr(encoder, f"layer{i}")
            first = layer[0]
            stride *= (first.conv2 if isinstance(first, Bottleneck) else first.conv1).stride[0]
            last = layer[-1]
            channels = (last.conv3 if isinstance(last, Bottleneck) else last.conv2).out_channels
            stages.append((f"layer{i}", channels, stride))
        return stages
    if isinstance(encoder, nn.Sequential):  # the small CNN: conv-BN-ReLU blocks, max-pools
        stages, stride, channels = [], 1, 0
        for name, module in encoder.named_children():
            if isinstance(module, nn.Conv2d):
                channels = module.out_channels
                stride *= module.stride[0]
            elif isinstance(module, nn.ReLU):
                stages.append((name, channels, stride))
            elif isinstance(module, nn.MaxPool2d):
                stride *= 2
        if stages:
            return stages
    raise ConfigError("model.encoder", f"no feature maps found in a {type(encoder).__name__}; "
                      "dense protocols take torchvision ResNets and the small CNN")


def segmentation_model(encoder: nn.Module, num_classes: int) -> FCN:
    """torchvision's FCN: the encoder's last stage (dilated where it can be) and `FCNHead`."""
    if isinstance(encoder, ResNet) and isinstance(encoder.layer4[0], Bottleneck):
        dilate_last_stage(encoder)
    name, channels, _ = feature_stages(encoder)[-1]
    backbone = create_feature_extractor(encoder, return_nodes={name: "out"})
    return FCN(backbone, FCNHead(channels, num_classes), aux_classifier=None)


def dilate_last_stage(resnet: ResNet) -> None:
    """layer4 at stride 1 with dilation 2, in place: what torchvision's
    `replace_stride_with_dilation=[False, False, True]` builds; the weights are unchanged."""
    for i, block in enumerate(resnet.layer4):
        if i == 0:
            block.conv2.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        else:
            block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)


def detection_model(encoder: nn.Module, num_classes: int, min_size: tuple[int, ...],
                    max_size: int, freeze_encoder: bool, rois_per_image: int = 512) -> FasterRCNN:
    """torchvision's Faster R-CNN on an FPN over the encoder's stages (frozen batch norms; the
    encoder's weights frozen too when `freeze_encoder`). Images are resized by the detector:
    shorter side drawn from `min_size` per training image (the largest at evaluation), longer
    side at most `max_size`, then normalised by ImageNet's statistics. The box head trains on
    `rois_per_image` sampled proposals per image (torchvision's default 512); its hidden layers
    are torchvision's 1024 wide on a ResNet, 4 x the FPN width on the small CNN."""
    encoder = frozen_batchnorm(encoder)
    stages = feature_stages(encoder)
    stages = stages[-4:] if isinstance(encoder, ResNet) else stages[-2:]
    if freeze_encoder:
        encoder.requires_grad_(False)
    out_channels = min(256, max(channels for _, channels, _ in stages))
    backbone = BackboneWithFPN(
        encoder,
        return_layers={name: str(i) for i, (name, _, _) in enumerate(stages)},
        in_channels_list=[channels for _, channels, _ in stages],
        out_channels=out_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    strides = [stride for _, _, stride in stages] + [2 * stages[-1][2]]  # + the pooled level
    anchors = AnchorGenerator(sizes=tuple((8 * s,) for s in strides),
                              aspect_ratios=((0.5, 1.0, 2.0),) * len(strides))
    roi_pool = MultiScaleRoIAlign([str(i) for i in range(len(stages))], output_size=7,
                                  sampling_ratio=2)
    hidden = 1024 if isinstance(encoder, ResNet) else 4 * out_channels
    mean, std = IMAGENET_STATS
    return FasterRCNN(backbone, rpn_anchor_generator=anchors,
                      box_roi_pool=roi_pool, box_head=TwoMLPHead(out_channels * 7 * 7, hidden),
                      box_predictor=FastRCNNPredictor(hidden, num_classes),
                      box_batch_size_per_image=rois_per_image, min_size=min_size,
                      max_size=max_size, image_mean=list(mean), image_std=list(std))


def frozen_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding its statistics
    and affine parameters (torchvision's detection backbones train that way)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        setattr(module, name, frozen_batchnorm(child))
    return module


def supervised_encoder(cfg: ModelConfig) -> nn.Module:
    """`cfg.encoder` with torchvision's supervised ImageNet weights, read from
    `cfg.supervised_weights` (default: torchvision's file in torch's hub cache, where
    torchvision itself keeps downloaded weights). Never downloads."""
    field = "model.supervised_weights"
    names = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}
    if cfg.encoder not in names or cfg.cifar_stem:
        raise ConfigError(field, f"torchvision has supervised ImageNet weights for resnet18 "
                          f"and resnet50 with the standard stem, not model.encoder="
                          f"{cfg.encoder} (cifar_stem={cfg.cifar_stem})")
    weights = getattr(torchvision.models, names[cfg.encoder]).IMAGENET1K_V1
    path = Path(cfg.supervised_weights or
                Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).expanduser()
    if not path.is_file():
        raise ConfigError(field, f"{path} does not exist; download {weights.url} there (or "
                          f"point {field} at a copy): byol-ray never downloads weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and size errors all mean "not a state_dict"
        raise ConfigError(field, f"{path} is not a torch state_dict ({error})") from None
    encoder, _ = build_encoder(cfg)
    missing, unexpected = encoder.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False
    )
    if missing or unexpected:
        raise ConfigError(field, f"{path} does not hold {cfg.encoder} weights (missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]})")
    return encoder
