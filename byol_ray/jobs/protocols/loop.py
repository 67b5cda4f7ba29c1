"""The loop of every protocol: train a classifier on a trained encoder, score it.

`job` (a plain dict, see `byol_ray.jobs.protocols.jobs.Job`) says which encoder weights, which
train-split images to fit on, which images to score, and how to train:

- `linear`: the encoder is frozen with BN in eval mode; only a linear layer on its
  representation learns [P App. C.1];
- `finetune`: encoder and linear layer learn together, BN in train mode [P App. C.2].

Training images get a random resized crop + flip (`protocol.crop_scale`, the preset's
`augment.flip_p`), ImageFolder's crops cut from the full image by the loader workers (as
pretraining's); scoring uses the centre view of the kNN monitor. SGD with Nesterov momentum
0.9 and a per-step cosine decay of the rate to 0. Every worker trains on its shard of each
batch (DDP) and scores its shard of the scored images; top-1 is summed over workers. The
loop knows its process only through the session (`runtime/session.py`) and imports no Ray.
"""

from __future__ import annotations

import json
import math
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from byol_ray.core.config import from_dict
from byol_ray.learn.data import BatchAugment, ViewParams, eval_transform, load_splits
from byol_ray.learn.metrics import shard_indices
from byol_ray.learn.models import build_encoder
from byol_ray.learn.parallel import mean_over_workers, sum_over_workers, with_sync_batchnorm
from byol_ray.runtime.progress import Progress
from byol_ray.runtime.session import Session


def classifier_worker(session: Session, job: dict[str, Any]) -> None:
    """Fit on `job["fit_indices"]` of train, report top-1 on the scored images as `top1` (and
    the last epoch's mean loss as `train_loss`)."""
    cfg = from_dict(job["cfg"])
    rank, world, device = session.rank, session.world, session.device
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    linear = job["mode"] == "linear"

    splits = load_splits(cfg.data)
    a = cfg.augment
    crop_scale, crop_ratio = tuple(cfg.protocol.crop_scale), tuple(a.crop_ratio)
    # ImageFolder: crops of the full image, cut by the loader; else cropped on the device.
    crop_on_device = splits.train_crops is None
    fit_source = splits.train if crop_on_device else splits.train_crops(crop_scale, crop_ratio)
    fit_set = Subset(fit_source, job["fit_indices"])
    scored = splits.test if job["score_split"] == "test" else splits.train
    score_indices = job["score_indices"] or list(range(len(scored)))

    torch.manual_seed(job["seed"])  # the same head on every worker
    encoder, dim = build_encoder(cfg.model)
    encoder.load_state_dict(job["encoder_state"])
    layer = nn.Linear(dim, splits.num_classes)
    head = layer
    if linear:  # [P App. C.1]: a linear classifier on the frozen representation
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        if cfg.protocol.feature_norm:
            head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), layer)
        encoder.requires_grad_(False).eval()
        trained: nn.Module = head
    else:  # [P App. C.2]: the whole network learns; BN statistics over the global batch
        trained = with_sync_batchnorm(nn.Sequential(encoder, head), device, world)
    encoder.to(device)
    model = session.prepare(trained)  # DDP when world > 1
    torch.manual_seed(job["seed"] * 1000 + rank + 1)  # each worker its own crops

    batch_size = min(job["batch_size"], len(fit_set)) // world or 1
    sampler = DistributedSampler(fit_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=job["seed"])
    loader = DataLoader(fit_set, batch_size=batch_size, sampler=sampler,
                        num_workers=cfg.data.loader_workers)
    crop_flip = ViewParams(
        crop_scale=crop_scale, crop_ratio=crop_ratio,
        flip_p=a.flip_p, jitter_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
        grey_p=0.0, blur_p=0.0, blur_sigma=(0.1, 2.0), solarize_p=0.0,
    )
    augment = BatchAugment(crop_flip, cfg.data.image_size, splits.mean, splits.std).to(device)
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=job["lr"], momentum=0.9, nesterov=True,
                                weight_decay=job["weight_decay"])
    total = max(1, job["epochs"] * len(loader))
    step, loss_sum = 0, torch.zeros((), device=device)
    fit = "final fit" if job["score_split"] == "test" else "lr choice"
    progress = Progress(f"{job['mode']} {fit} at lr {job['lr']:g}: epoch",
                        job["epochs"]) if rank == 0 else None
    for epoch in range(job["epochs"]):
        sampler.set_epoch(epoch)
        model.train()
        if linear:
            encoder.eval()
        loss_sum.zero_()
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = job["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            x = augment(images.to(device), crop=crop_on_device)
            if linear:
                with torch.no_grad():
                    x = encoder(x)
            loss = F.cross_entropy(model(x), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # sync: DDP's all-reduce
            optimizer.step()
            loss_sum += loss.detach()
            step += 1
        if progress:  # this worker's mean loss: no collective for a console line
            progress.step(epoch + 1, lambda summed=loss_sum:
                          f"loss {summed.item() / max(len(loader), 1):.4f}")
    transform = partial(eval_transform, image_size=cfg.data.image_size, mean=splits.mean,
                        std=splits.std)
    classifier = nn.Sequential(encoder, head).eval()
    correct, count = _score(classifier, scored, score_indices, transform, device, rank, world,
                            job["batch_size"])
    metrics = {"top1": 100.0 * correct / max(count, 1), "scored": float(count),
               "train_loss": mean_over_workers(loss_sum / max(len(loader), 1), world)}  # sync
    _report(session, metrics)


def _report(session: Session, metrics: dict[str, float]) -> None:
    """Report from every worker (sync); rank 0 attaches the metrics as a checkpoint, which is
    what a Ray Train run hands back to its driver (Train V2 keeps checkpointed metrics)."""
    if session.rank != 0:
        session.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics))
        session.report(metrics, checkpoint=Path(folder))


@torch.no_grad()
def _score(classifier: nn.Module, dataset, indices: list[int], transform, device,
           rank: int, world: int, batch_size: int) -> tuple[int, int]:
    """Correct predictions and count over `indices`, each worker scoring its strided shard."""
    mine = [indices[i] for i in shard_indices(len(indices), rank, world)]
    totals = torch.zeros(2, dtype=torch.int64)
    for start in range(0, len(mine), batch_size):
        items = [dataset[i] for i in mine[start : start + batch_size]]
        images = torch.stack([torch.as_tensor(img) for img, _ in items]).to(device)
        labels = torch.tensor([int(label) for _, label in items])
        predictions = classifier(transform(images)).argmax(dim=1).cpu()
        totals += torch.tensor([int((predictions == labels).sum()), len(items)])
    totals = sum_over_workers(totals, device, world)  # sync
    return int(totals[0]), int(totals[1])
