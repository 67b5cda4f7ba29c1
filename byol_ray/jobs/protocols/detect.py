"""Object detection on PASCAL VOC [P §4 "Transfer to other vision tasks", App. D.5]: torchvision's
Faster R-CNN with FPN on the encoder, scored by AP50 and COCO-style AP (torchmetrics'
MeanAveragePrecision on pycocotools; VOC's "difficult" objects count as crowd regions, so
detecting them is neither rewarded nor penalised, as in VOC's own evaluation)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.detection import MeanAveragePrecision

from byol_ray.core.config import DetectConfig
from byol_ray.learn.data.voc import VOC_CLASSES, detection_collate, detection_dataset
from byol_ray.learn.models.dense import detection_model

NAME = "detect"
collate = detection_collate


def build_model(encoder: nn.Module, settings: DetectConfig) -> nn.Module:
    """Faster R-CNN + FPN; the encoder frozen as in the paper unless asked otherwise."""
    return detection_model(encoder, len(VOC_CLASSES), settings.min_size, settings.max_size,
                           settings.freeze_encoder, settings.rois_per_image)


def datasets(settings: DetectConfig) -> tuple[Dataset, Dataset]:
    """(training split, evaluation split); the detector does the multi-scale resizing."""
    s = settings
    return (detection_dataset(s.root, s.year, s.train_split),
            detection_dataset(s.root, s.year, s.eval_split))


def loss(model: nn.Module, batch: tuple[list, list], device: torch.device) -> Tensor:
    """The sum of Faster R-CNN's four losses (RPN and box head, classification and boxes)."""
    images, targets = batch
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)}
               for t in targets]
    return sum(model(images, targets).values())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """AP50, AP75 and AP (IoU 0.5:0.95), in %, over the evaluation split; every worker scores
    its shard and torchmetrics gathers the detections before pycocotools scores them."""
    metric = MeanAveragePrecision(iou_type="bbox", backend="pycocotools").to(device)
    for images, targets in loader:
        detections = model([image.to(device) for image in images])
        metric.update(
            [{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections],
            [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device),
              "iscrowd": t["difficult"].to(device).long()} for t in targets],
        )
    result = metric.compute()
    return {name: _percent(result[key])
            for name, key in (("ap50", "map_50"), ("ap75", "map_75"), ("ap", "map"))}


def _percent(value: Tensor) -> float:
    """pycocotools' -1 (no ground truth to score against) becomes NaN, never a number."""
    return 100 * float(value) if value >= 0 else float("nan")
