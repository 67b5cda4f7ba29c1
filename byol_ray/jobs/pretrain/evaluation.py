"""Evaluation inside the worker group: every worker embeds a shard, rank 0 scores.

Glue between the pure metrics of `byol_ray.learn.metrics` and the loop's workers (one, or a
Ray Train run's several: `rank`, `world` from the session); the returned dict
holds the MLflow metric names (`eval/...`) on rank 0 and is empty on the other ranks. Items are
read by `data.loader_workers` DataLoader processes (ImageFolder decodes in parallel) and each
split is embedded once.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from byol_ray.core.config import Config
from byol_ray.learn.data import DatasetSplits, eval_transform
from byol_ray.learn.methods import Method
from byol_ray.learn.metrics import (
    embedding_std,
    extract_features,
    few_label_knn_top1,
    gather_features,
    is_collapsed,
    knn_top1,
    linear_probe,
    shard_indices,
)


class _FeaturesAndProjection(nn.Module):
    """Encoder features and their projection, side by side: one pass yields both."""

    def __init__(self, encoder: nn.Module, projector: nn.Module):
        super().__init__()
        self.encoder, self.projector = encoder, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x).flatten(1)
        return torch.cat([features, self.projector(features)], dim=1)


def evaluate(
    method: Method,
    splits: DatasetSplits,
    cfg: Config,
    device: torch.device,
    rank: int,
    world: int,
    linear: bool = False,
) -> dict[str, float]:
    """kNN top-1 for each k, the few-label kNN top-1 (when eval.few_label_per_class > 0),
    collapse metrics and, if `linear`, the linear-probe top-1."""
    transform = partial(
        eval_transform, image_size=cfg.data.image_size, mean=splits.mean, std=splits.std
    )

    def embed(module: nn.Module, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        indices = shard_indices(len(dataset), rank, world)
        features, labels = extract_features(
            module, dataset, transform, batch_size=cfg.eval.linear_batch_size, device=device,
            indices=indices, num_workers=cfg.data.loader_workers,
        )
        return gather_features(features, labels, torch.tensor(indices, dtype=torch.long))

    train_x, train_y = embed(method.encoder, splits.train)
    # Each split is embedded once: the test pass also yields the online projection, where
    # collapse shows (the embedding the loss sees), when the method has a projector.
    projector = getattr(method, "projector", None)
    if projector is None:
        test_x, test_y = embed(method.encoder, splits.test)
        projection = test_x
    else:
        both, test_y = embed(_FeaturesAndProjection(method.encoder, projector), splits.test)
        test_x, projection = both[:, : train_x.shape[1]], both[:, train_x.shape[1] :]
    if rank != 0:
        return {}

    e = cfg.eval
    knn = knn_top1(train_x, train_y, test_x, test_y, ks=e.knn_k, temperature=e.knn_temperature,
                   num_classes=splits.num_classes)
    std = embedding_std(projection)
    metrics = {"eval/knn_top1": knn[e.knn_k[0]]}
    metrics |= {f"eval/knn_top1_k{k}": acc for k, acc in knn.items()}
    metrics |= {"eval/embedding_std": std,
                "eval/collapsed": float(is_collapsed(std, e.collapse_threshold))}
    if e.few_label_per_class:
        metrics["eval/few_label_knn_top1"] = few_label_knn_top1(
            train_x, train_y, test_x, test_y, per_class=e.few_label_per_class,
            draws=e.few_label_draws, k=e.knn_k[0], temperature=e.knn_temperature,
            num_classes=splits.num_classes)
    if linear:
        metrics["eval/linear_top1"] = linear_probe(
            train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device),
            num_classes=splits.num_classes, epochs=e.linear_epochs, lr=e.linear_lr,
            batch_size=e.linear_batch_size, seed=cfg.train.seed,
        )
    return metrics
