"""PASCAL VOC segmentation and detection through torchvision's `VOCSegmentation` /
`VOCDetection`, checked before any worker starts, with the paper's transforms [P App. D.4/D.5].

`root` is the folder where the VOC tars were extracted: it holds `VOCdevkit/VOC<year>/` with
`JPEGImages/*.jpg`, `ImageSets/Segmentation|Main/<split>.txt`, `SegmentationClass/*.png`
(palette PNGs whose values are class ids 0..20, 255 = ignore) and `Annotations/*.xml`.
Items come out as float images normalised by ImageNet's statistics (as the paper does for every
transfer task), with an int64 mask (segmentation) or a torchvision detection target.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from byol_ray.core.config import ConfigError
from byol_ray.learn.data.datasets import IMAGENET_STATS

# The VOC devkit's classes, in its label order: a mask value or a detection label is the index.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
IGNORE_INDEX = 255  # VOC masks' "void" (object borders, difficult regions): never scored
TASK_FOLDERS = {  # task -> (ImageSets sub-folder, target folder)
    "segment": ("Segmentation", "SegmentationClass"),
    "detect": ("Main", "Annotations"),
}


def voc_folder(root: str, year: str) -> Path:
    """`root/VOCdevkit/VOC<year>`, where torchvision looks for one year of VOC."""
    return Path(root).expanduser() / "VOCdevkit" / f"VOC{year}"


def check_voc(task: str, root: str, year: str, splits: tuple[str, ...]) -> None:
    """Raise ConfigError naming `<task>.root` (or the bad file) unless every listed image and
    target of `splits` exists and holds what the task can use: masks only with class ids
    0..20 and 255, annotations with known class names and boxes inside their image."""
    field = f"{task}.root"
    if not root:
        raise ConfigError(field, "required: the folder holding VOCdevkit/VOC<year> (where the "
                          "PASCAL VOC tars were extracted)")
    folder = voc_folder(root, year)
    if not folder.is_dir():
        raise ConfigError(field, f"{root!r} has no VOCdevkit/VOC{year} folder")
    sets_name, target_name = TASK_FOLDERS[task]
    for needed in ("JPEGImages", target_name, f"ImageSets/{sets_name}"):
        if not (folder / needed).is_dir():
            raise ConfigError(field, f"{folder} has no {needed} folder")
    extension = ".png" if task == "segment" else ".xml"
    check_target = _check_mask if task == "segment" else _check_annotation
    for split in splits:
        ids = split_ids(folder, sets_name, split, field)
        for image_id in ids:
            image = folder / "JPEGImages" / f"{image_id}.jpg"
            target = folder / target_name / f"{image_id}{extension}"
            for path in (image, target):
                if not path.is_file():
                    raise ConfigError(field, f"{path} is missing (listed in {split}.txt)")
            check_target(target, field)


def split_ids(folder: Path, sets_name: str, split: str, field: str) -> list[str]:
    """The image ids listed in ImageSets/<sets_name>/<split>.txt (at least one)."""
    path = folder / "ImageSets" / sets_name / f"{split}.txt"
    if not path.is_file():
        raise ConfigError(field, f"{path} is missing (the {split!r} split)")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ConfigError(field, f"{path} lists no images")
    return ids


def _check_mask(path: Path, field: str) -> None:
    try:
        with Image.open(path) as mask:
            if mask.mode not in ("P", "L"):
                raise ConfigError(field, f"{path}: a VOC mask is a palette or greyscale PNG "
                                  f"of class ids, not mode {mask.mode!r}")
            values = {value for _, value in mask.getcolors(maxcolors=256) or []}
    except (UnidentifiedImageError, OSError) as error:
        raise ConfigError(field, f"{path} is not a readable PNG ({error})") from None
    unknown = sorted(v for v in values if v >= len(VOC_CLASSES) and v != IGNORE_INDEX)
    if unknown:
        raise ConfigError(field, f"{path} holds class ids {unknown}; VOC masks allow "
                          f"0..{len(VOC_CLASSES) - 1} and {IGNORE_INDEX} (ignore)")


def _check_annotation(path: Path, field: str) -> None:
    try:
        root = ET.parse(path).getroot()
        width = int(root.findtext("size/width"))
        height = int(root.findtext("size/height"))
        objects = [(o.findtext("name"), [float(o.findtext(f"bndbox/{k}"))
                                         for k in ("xmin", "ymin", "xmax", "ymax")])
                   for o in root.iter("object")]
    except (ET.ParseError, TypeError, ValueError) as error:
        raise ConfigError(field, f"{path} is not a VOC annotation with size and object "
                          f"boxes ({error})") from None
    if not objects:
        raise ConfigError(field, f"{path} has no <object>; every VOC detection image has one")
    for name, (x0, y0, x1, y1) in objects:
        if name not in VOC_CLASSES[1:]:
            raise ConfigError(field, f"{path}: unknown class {name!r}; VOC has: "
                              f"{', '.join(VOC_CLASSES[1:])}")
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ConfigError(field, f"{path}: box {[x0, y0, x1, y1]} of {name!r} is empty "
                              f"or outside the {width}x{height} image")


# --------------------------------------------------------------------------- datasets


def segmentation_dataset(root: str, year: str, split: str, train: bool, crop_size: int,
                         scale_range: tuple[float, float]) -> torchvision.datasets.VOCSegmentation:
    """VOC segmentation items (image (3, C, C) float, mask (C, C) int64) with C = crop_size:
    random rescaling in `scale_range`, crop and flip for training, the central crop for
    evaluation [P App. D.4]."""
    transform = _SegmentationTransform(crop_size, scale_range if train else None)
    return torchvision.datasets.VOCSegmentation(
        str(Path(root).expanduser()), year=year, image_set=split, transforms=transform
    )


def detection_dataset(root: str, year: str, split: str) -> torch.utils.data.Dataset:
    """VOC detection items (image (3, H, W) float in [0, 1], target) where target holds
    `boxes` (N, 4) xyxy, `labels` (N,) in 1..20 and `difficult` (N,) bool. No augmentation
    beyond the detector's multi-scale resizing [P App. D.5]."""
    dataset = torchvision.datasets.VOCDetection(
        str(Path(root).expanduser()), year=year, image_set=split
    )
    return _Mapped(dataset, _detection_item)


class _Mapped(torch.utils.data.Dataset):
    """`dataset` with `fn(*item)` applied to each item."""

    def __init__(self, dataset: torch.utils.data.Dataset, fn: Callable[..., Any]):
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.fn(*self.dataset[index])


def _detection_item(image: Image.Image, annotation: dict) -> tuple[Tensor, dict[str, Tensor]]:
    objects = annotation["annotation"]["object"]
    boxes = [[float(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([VOC_CLASSES.index(o["name"]) for o in objects]),
        "difficult": torch.tensor([o.get("difficult", "0") == "1" for o in objects]),
    }
    return F.to_dtype(F.to_image(image), torch.float32, scale=True), target


class _SegmentationTransform:
    """(PIL image, PIL mask) -> normalised float image and int64 mask of crop_size x crop_size.

    Training (scale_range given): rescale both by a ratio drawn in scale_range, pad to the
    crop (image 0, mask `IGNORE_INDEX`), random crop, random horizontal flip. Evaluation:
    pad, then the central crop.
    """

    def __init__(self, crop_size: int, scale_range: tuple[float, float] | None):
        self.crop_size, self.scale_range = crop_size, scale_range
        self.normalize = v2.Normalize(*IMAGENET_STATS)

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[Tensor, Tensor]:
        image = F.to_dtype(F.to_image(image), torch.float32, scale=True)
        target = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.uint8)))
        if self.scale_range is not None:
            ratio = random.uniform(*self.scale_range)
            size = [max(1, round(side * ratio)) for side in image.shape[-2:]]
            image, target = F.resize(image, size), F.resize(target, size)
        image, target = self._pad(image, target)
        if self.scale_range is not None:
            top = random.randint(0, image.shape[-2] - self.crop_size)
            left = random.randint(0, image.shape[-1] - self.crop_size)
            image = F.crop(image, top, left, self.crop_size, self.crop_size)
            target = F.crop(target, top, left, self.crop_size, self.crop_size)
            if random.random() < 0.5:
                image, target = F.horizontal_flip(image), F.horizontal_flip(target)
        else:
            image = F.center_crop(image, [self.crop_size])
            target = F.center_crop(target, [self.crop_size])
        return self.normalize(image), target.as_subclass(Tensor).long()

    def _pad(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        bottom, right = max(0, self.crop_size - height), max(0, self.crop_size - width)
        if not (bottom or right):
            return image, mask
        padding = [0, 0, right, bottom]
        return F.pad(image, padding, fill=0), F.pad(mask, padding, fill=IGNORE_INDEX)


def detection_collate(batch: list) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Detection batches stay lists: images differ in size (the detector batches them)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
