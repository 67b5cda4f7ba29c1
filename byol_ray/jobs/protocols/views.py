"""The protocols' training views, one definition for the linear pass and fine-tuning: a random
resized crop (`protocol.crop_scale`, the preset's `augment.crop_ratio`) and a flip (the
preset's `augment.flip_p`), no colour, blur or solarisation [P App. C.1, C.2]."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from byol_ray.core.config import Config
from byol_ray.learn.data import BatchAugment, ViewParams


def fit_images(cfg: Config, splits) -> tuple[Dataset, bool]:
    """The train images a protocol fits on, and whether they are cropped on the device: an
    ImageFolder's crops are cut from the full image by the loader workers (as pretraining's),
    every other dataset's on the device by `crop_flip`."""
    on_device = splits.train_crops is None
    if on_device:
        return splits.train, True
    return splits.train_crops(tuple(cfg.protocol.crop_scale), tuple(cfg.augment.crop_ratio)), False


def crop_flip(cfg: Config, splits, device: torch.device) -> BatchAugment:
    """The batched crop + flip on `device`, normalised with the dataset's mean and std."""
    params = ViewParams(
        crop_scale=tuple(cfg.protocol.crop_scale), crop_ratio=tuple(cfg.augment.crop_ratio),
        flip_p=cfg.augment.flip_p, jitter_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0,
        hue=0.0, grey_p=0.0, blur_p=0.0, blur_sigma=(0.1, 2.0), solarize_p=0.0,
    )
    return BatchAugment(params, cfg.data.image_size, splits.mean, splits.std).to(device)


def sharded_loader(dataset: Dataset, batch_size: int, seed: int, rank: int, world: int,
                   loader_workers: int) -> tuple[DataLoader, DistributedSampler]:
    """Each worker's shard of every global batch of `batch_size` (at most the dataset), in an
    order seeded by `seed` and reshuffled by `sampler.set_epoch`."""
    per_worker = min(batch_size, len(dataset)) // world or 1
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed)
    loader = DataLoader(dataset, batch_size=per_worker, sampler=sampler,
                        num_workers=loader_workers)
    return loader, sampler
