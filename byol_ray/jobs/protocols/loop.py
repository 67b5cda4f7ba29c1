"""The fine-tuning loop: encoder and a linear layer learn together, BN in train mode
[P App. C.2], at one learning rate; then the classifier is scored. (The linear protocol trains
every rate's head on one pass of the frozen encoder: `linear_pass.py`.)

`job` (a plain dict, see `byol_ray.jobs.protocols.jobs.Job`) says which encoder weights, which
train-split images to fit on, which images to score, and how to train. Training images get the
protocols' crop + flip (`views.py`); scoring uses the centre view of the kNN monitor. SGD
with Nesterov momentum 0.9 and a per-step cosine decay of the rate to 0. Every worker trains
on its shard of each batch (DDP) and scores its shard of the scored images; top-1 is summed
over workers. The loop knows its process only through the session (`runtime/session.py`) and
imports no Ray.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from byol_ray.core.config import from_dict
from byol_ray.jobs.protocols.views import crop_flip, fit_images, sharded_loader
from byol_ray.learn.data import eval_transform, load_splits
from byol_ray.learn.metrics import shard_indices
from byol_ray.learn.models import build_encoder
from byol_ray.learn.parallel import mean_over_workers, sum_over_workers, with_sync_batchnorm
from byol_ray.runtime.progress import Progress
from byol_ray.runtime.session import Session, report_result


def classifier_worker(session: Session, job: dict[str, Any]) -> None:
    """Fit on `job["fit_indices"]` of train, report top-1 on the scored images as `top1` (and
    the last epoch's mean loss as `train_loss`)."""
    cfg = from_dict(job["cfg"])
    rank, world, device = session.rank, session.world, session.device
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    if job["mode"] != "finetune":
        raise ValueError(f"job mode {job['mode']!r}: this loop fine-tunes; the linear protocol "
                         "is linear_pass.py")

    splits = load_splits(cfg.data)
    fit_source, crop_on_device = fit_images(cfg, splits)
    fit_set = Subset(fit_source, job["fit_indices"])
    scored = splits.test if job["score_split"] == "test" else splits.train
    score_indices = job["score_indices"] or list(range(len(scored)))

    torch.manual_seed(job["seed"])  # the same head on every worker
    encoder, dim = build_encoder(cfg.model)
    encoder.load_state_dict(job["encoder_state"])
    head = nn.Linear(dim, splits.num_classes)
    # The whole network learns; BN statistics over the global batch.
    trained = with_sync_batchnorm(nn.Sequential(encoder, head), device, world)
    encoder.to(device)
    model = session.prepare(trained)  # DDP when world > 1
    torch.manual_seed(job["seed"] * 1000 + rank + 1)  # each worker its own crops

    loader, sampler = sharded_loader(fit_set, job["batch_size"], job["seed"], rank, world,
                                     cfg.data.loader_workers)
    augment = crop_flip(cfg, splits, device)
    params = list(trained.parameters())
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
        loss_sum.zero_()
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = job["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            x = augment(images.to(device), crop=crop_on_device)
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
    report_result(session, metrics)


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
