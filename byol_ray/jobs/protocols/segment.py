"""Semantic segmentation on PASCAL VOC [P §4 "Transfer to other vision tasks", App. D.4]:
torchvision's FCN fine-tuned with the encoder, per-pixel cross-entropy, scored by mean IoU
over the classes (torchmetrics' Jaccard index, void pixels ignored)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassJaccardIndex

from byol_ray.core.config import SegmentConfig
from byol_ray.learn.data.voc import IGNORE_INDEX, VOC_CLASSES, segmentation_dataset
from byol_ray.learn.models.dense import segmentation_model

NAME = "segment"
collate = None  # fixed-size crops stack into one tensor


def build_model(encoder: nn.Module, settings: SegmentConfig) -> nn.Module:
    """FCN on the encoder; the encoder's weights frozen only when asked."""
    model = segmentation_model(encoder, num_classes=len(VOC_CLASSES))
    if settings.freeze_encoder:
        model.backbone.requires_grad_(False)
    return model


def datasets(settings: SegmentConfig) -> tuple[Dataset, Dataset]:
    """(training crops with random scale and flip, central evaluation crops)."""
    s = settings
    return (segmentation_dataset(s.root, s.year, s.train_split, True, s.crop_size, s.scale_range),
            segmentation_dataset(s.root, s.year, s.eval_split, False, s.crop_size, s.scale_range))


def loss(model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device) -> Tensor:
    """Per-pixel softmax cross-entropy, void pixels ignored [P App. D.4]."""
    images, masks = batch
    logits = model(images.to(device, non_blocking=True))["out"]
    return F.cross_entropy(logits, masks.to(device, non_blocking=True), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """mIoU (%) over the classes present in the ground truth or the predictions, and each
    class's IoU; every worker scores its shard and torchmetrics sums the confusion counts."""
    metric = MulticlassJaccardIndex(len(VOC_CLASSES), average="none", ignore_index=IGNORE_INDEX,
                                    zero_division=float("nan")).to(device)
    for images, masks in loader:
        logits = model(images.to(device))["out"]
        metric.update(logits.argmax(dim=1), masks.to(device))
    per_class = metric.compute().cpu()
    scores = {"miou": 100 * float(torch.nanmean(per_class))}
    scores |= {f"iou_{name}": 100 * float(iou)
               for name, iou in zip(VOC_CLASSES, per_class, strict=True) if not iou.isnan()}
    return scores
