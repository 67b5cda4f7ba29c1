"""Datasets as uint8 image tensors, and BYOL's batched view augmentations."""

from byol_ray.learn.data.augment import BatchAugment, ViewParams, eval_transform, view_params
from byol_ray.learn.data.datasets import (
    DatasetSplits,
    ImageTensorDataset,
    check_dataset,
    load_splits,
)
from byol_ray.learn.data.views import ViewPair

__all__ = [
    "BatchAugment",
    "DatasetSplits",
    "ImageTensorDataset",
    "ViewPair",
    "ViewParams",
    "check_dataset",
    "eval_transform",
    "load_splits",
    "view_params",
]
