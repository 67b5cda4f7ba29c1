"""VOC segmentation / detection on a test-written folder in the real layout, and the checks
that stop bad folders before any worker starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from voc_synthetic import CLASSES, write_annotation, write_mask, write_voc

from byol_ray.core.config import ConfigError
from byol_ray.learn.data.voc import (
    IGNORE_INDEX,
    check_voc,
    detection_dataset,
    segmentation_dataset,
    voc_folder,
)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> str:
    return str(write_voc(tmp_path_factory.mktemp("voc"), splits={"train": 4, "val": 2}))


def test_segmentation_items_are_crops_with_known_class_ids(voc):
    check_voc("segment", voc, "2012", ("train", "val"))
    train = segmentation_dataset(voc, "2012", "train", train=True, crop_size=48,
                                 scale_range=(0.5, 2.0))
    val = segmentation_dataset(voc, "2012", "val", train=False, crop_size=80,
                               scale_range=(0.5, 2.0))
    assert len(train) == 4 and len(val) == 2
    allowed = {0, IGNORE_INDEX, *CLASSES}
    for dataset, side in ((train, 48), (val, 80)):
        image, mask = dataset[0]
        assert image.shape == (3, side, side) and image.dtype == torch.float32
        assert mask.shape == (side, side) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= allowed
    _, mask = val[0]  # 64 px padded to 80 below and right: ignored, never background
    assert (mask[-16:] == IGNORE_INDEX).all() and (mask[:, -16:] == IGNORE_INDEX).all()


def test_detection_items_hold_boxes_and_labels(voc):
    check_voc("detect", voc, "2012", ("train",))
    image, target = detection_dataset(voc, "2012", "train")[0]
    assert image.shape == (3, 64, 64) and image.min() >= 0 and image.max() <= 1
    assert target["boxes"].shape[1] == 4 and len(target["boxes"]) == len(target["labels"])
    assert set(target["labels"].tolist()) <= set(CLASSES)
    assert not target["difficult"].any()


@pytest.mark.parametrize("breakage, expected", [
    ("no_root", "segment.root: required"),
    ("no_year", "has no VOCdevkit/VOC2012 folder"),
    ("no_masks", "has no SegmentationClass folder"),
    ("no_split", "val.txt is missing (the 'val' split)"),
    ("missing_image", ".jpg is missing (listed in train.txt)"),
    ("bad_class_id", "holds class ids [21, 40]; VOC masks allow 0..20 and 255 (ignore)"),
    ("rgb_mask", "not mode 'RGB'"),
])
def test_bad_segmentation_folders_name_the_field_and_file(tmp_path, breakage, expected):
    root = write_voc(tmp_path, splits={"train": 2, "val": 1})
    folder = voc_folder(str(root), "2012")
    if breakage == "no_year":
        (folder.parent / "VOC2012").rename(folder.parent / "VOC2007")
    elif breakage == "no_masks":
        (folder / "SegmentationClass").rename(folder / "masks")
    elif breakage == "no_split":
        (folder / "ImageSets/Segmentation/val.txt").unlink()
    elif breakage == "missing_image":
        next((folder / "JPEGImages").glob("*train_0001.jpg")).unlink()
    elif breakage == "bad_class_id":
        mask = np.zeros((64, 64), np.uint8)
        mask[:4], mask[-4:] = 21, 40
        write_mask(folder / "SegmentationClass" / "2012_train_0001.png", mask)
    elif breakage == "rgb_mask":
        from PIL import Image

        Image.new("RGB", (64, 64)).save(folder / "SegmentationClass" / "2012_val_0000.png")
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")) as error:
        check_voc("segment", "" if breakage == "no_root" else str(root), "2012",
                  ("train", "val"))
    assert error.value.field == "segment.root"


@pytest.mark.parametrize("objects, expected", [
    ([("unicorn", 1, 1, 10, 10)], "unknown class 'unicorn'"),
    ([("cat", 10, 10, 10, 20)], "is empty or outside the 64x64 image"),
    ([("cat", 10, 10, 70, 20)], "is empty or outside the 64x64 image"),
    ([], "has no <object>"),
])
def test_bad_annotations_name_the_file(tmp_path, objects, expected):
    root = write_voc(tmp_path, splits={"train": 2})
    path = voc_folder(str(root), "2012") / "Annotations" / "2012_train_0001.xml"
    write_annotation(path, "2012_train_0001", 64, objects)
    with pytest.raises(ConfigError, match=expected) as error:
        check_voc("detect", str(root), "2012", ("train",))
    assert "2012_train_0001.xml" in str(error.value) and error.value.field == "detect.root"
