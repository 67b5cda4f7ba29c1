"""The linear protocol [P App. C.1] as one Ray Train job: every rate of `protocol.linear_lrs`
fitted on train minus the held-out part (the choice) and on all of train (the refit), all
on one forward of the frozen encoder per augmented batch (`byol_ray.learn.linear_heads`,
whose docstring defines the data order), then the choice heads scored on the held-out part
and the refit heads on test.

Before, each rate and the refit were separate jobs: 6 x `linear_epochs` encoder passes over
train where this takes 1. Augmentation, encoder mode and optimiser are the separate fit's
(`byol_ray.jobs.protocols.loop`, mode `linear`): random resized crop + flip, the encoder
frozen with BN in eval mode, SGD Nesterov 0.9, per-step cosine decay to 0, zero-initialised
heads, optional feature BN (`protocol.feature_norm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from byol_ray.core.config import Config, from_dict
from byol_ray.jobs.protocols.fit import launch_fit, plain_values
from byol_ray.jobs.protocols.views import crop_flip, fit_images, sharded_loader
from byol_ray.learn.data import eval_transform, load_splits
from byol_ray.learn.linear_heads import HeadSpec, LinearHeads
from byol_ray.learn.metrics import shard_indices
from byol_ray.learn.models import build_encoder
from byol_ray.runtime.session import Session, report_result

CHOICE, REFIT = 0, 1  # the fit sets: train minus the held-out part, all of train


@dataclass
class LinearPass:
    """What `linear_pass_worker` receives (as a dict): the weights, the held-out part, the
    rates and how to train."""

    cfg: Config
    encoder_state: Any  # the encoder's state_dict (CPU tensors), or an object-store ref of it
    lrs: tuple[float, ...]
    choice_fit: list[int]  # train images the choice heads fit on
    held_out: list[int]  # train images that score the choice heads
    epochs: int
    batch_size: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """Plain values for Ray (the config as a dict)."""
        return plain_values(self)


def fit_linear_pass(job: LinearPass, name: str, storage: str, in_trial: bool = False
                    ) -> dict[str, float]:
    """Run the pass on `scaling.num_workers` workers; its metrics (see `run_pass`). `in_trial`:
    called inside a Tune trial, where one worker runs in the trial's own process."""
    return launch_fit(linear_pass_worker, job, name, storage, in_trial)


def linear_pass_worker(session: Session, job: dict[str, Any]) -> None:
    """The loop: `run_pass` on this worker, its metrics reported (rank 0 attaches them as a
    checkpoint: what a Ray Train run hands back to its driver)."""
    report_result(session, run_pass(job, job["encoder_state"], session.rank, session.world,
                                    session.device))


class _Indexed(Dataset):
    """The items of `indices` of a dataset, each with its index there: (image, label, index)."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Any, Any, int]:
        index = self.indices[position]
        return (*self.dataset[index], index)


def run_pass(job: dict[str, Any], state: dict, rank: int, world: int,
             device: torch.device) -> dict[str, float]:
    """One worker's share of the pass (Ray-free: a gloo group or one process will do).

    Metrics, for the i-th rate of `job["lrs"]`: `val_top1_<i>` (choice head on the held-out
    part), `test_top1_<i>` (refit head on test; the driver keeps the chosen one only),
    `train_loss_<i>` (the refit head's mean loss over the last epoch), and `val_images`,
    `test_images`, `train_images`. `job["fit_sets"]` (default both, CHOICE and REFIT) fits
    fewer: with one set the pass runs over that set's images only and scores only its heads
    (a separate fit, as the protocol's jobs were before; `benchmarks/eval_cost.py`)."""
    cfg = job["cfg"] if isinstance(job["cfg"], Config) else from_dict(job["cfg"])
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    splits = load_splits(cfg.data)
    fit_source, crop_on_device = fit_images(cfg, splits)

    encoder, dim = build_encoder(cfg.model)
    encoder.load_state_dict(state)
    encoder.requires_grad_(False).eval().to(device)
    lrs, fit_sets = tuple(job["lrs"]), tuple(job.get("fit_sets", (CHOICE, REFIT)))
    members = torch.zeros(2, len(fit_source), dtype=torch.bool)
    members[CHOICE, torch.as_tensor(job["choice_fit"], dtype=torch.long)] = True
    members[REFIT] = True
    dataset = _Indexed(fit_source, members[list(fit_sets)].any(0).nonzero()[:, 0].tolist())
    specs = [HeadSpec(lr, fit_set) for fit_set in fit_sets for lr in lrs]
    torch.manual_seed(job["seed"] * 1000 + rank + 1)  # each worker its own crops

    loader, sampler = sharded_loader(dataset, job["batch_size"], job["seed"], rank, world,
                                     cfg.data.loader_workers)
    heads = LinearHeads(dim, splits.num_classes, specs, members, job["epochs"] * len(loader),
                        feature_norm=cfg.protocol.feature_norm).to(device)
    augment = crop_flip(cfg, splits, device)
    loss_sum = torch.zeros(len(specs), device=device)
    for epoch in range(job["epochs"]):
        sampler.set_epoch(epoch)
        loss_sum.zero_()
        for images, labels, indices in loader:
            with torch.no_grad():
                features = encoder(augment(images.to(device), crop=crop_on_device))
            losses = heads.train_step(features, labels.to(device), indices)
            loss_sum += losses.nan_to_num(0.0)

    transform = partial(eval_transform, image_size=cfg.data.image_size, mean=splits.mean,
                        std=splits.std)
    score = partial(_score_heads, encoder, heads, transform=transform, device=device,
                    rank=rank, world=world, batch_size=job["batch_size"])
    metrics = {"train_images": float(len(dataset))}
    scored = {CHOICE: ("val", splits.train, job["held_out"]),
              REFIT: ("test", splits.test, list(range(len(splits.test))))}
    for k, fit_set in enumerate(fit_sets):
        split, data, indices = scored[fit_set]
        mine = list(range(k * len(lrs), (k + 1) * len(lrs)))
        correct, count = score(mine, data, indices)
        metrics[f"{split}_images"] = float(count)
        for i, head in enumerate(mine):
            metrics[f"{split}_top1_{i}"] = 100.0 * correct[i] / max(count, 1)
            if fit_set == REFIT:
                metrics[f"train_loss_{i}"] = float(loss_sum[head]) / max(len(loader), 1)
    return metrics


@torch.no_grad()
def _score_heads(encoder: nn.Module, heads: LinearHeads, which: list[int], dataset,
                 indices: list[int], transform, device: torch.device, rank: int, world: int,
                 batch_size: int) -> tuple[list[int], int]:
    """Correct predictions of each head of `which` over `indices`, and their count: each
    worker embeds its strided shard once for all heads; summed over workers."""
    mine = [indices[i] for i in shard_indices(len(indices), rank, world)]
    totals = torch.zeros(len(which) + 1, dtype=torch.int64)
    for start in range(0, len(mine), batch_size):
        items = [dataset[i] for i in mine[start : start + batch_size]]
        images = torch.stack([torch.as_tensor(img) for img, _ in items]).to(device)
        labels = torch.tensor([int(label) for _, label in items])
        features = encoder(transform(images))
        for j, head in enumerate(which):
            totals[j] += int((heads.logits(features, head).argmax(dim=1).cpu() == labels).sum())
        totals[-1] += len(items)
    if world > 1 and dist.is_initialized():
        on = device if dist.get_backend() == "nccl" else torch.device("cpu")
        totals = totals.to(on)
        dist.all_reduce(totals)
        totals = totals.cpu()
    return totals[:-1].tolist(), int(totals[-1])
