"""Which labelled images each protocol trains, chooses and reports on: pure, seeded functions.

Indices refer to the dataset layer's `train` split, so a saved list reproduces the split.
"""

from __future__ import annotations

import torch
from torch import Tensor


def labels_of(dataset) -> Tensor:
    """Every label of a dataset of (image, label) items, without decoding images when the
    dataset exposes them (`labels`, `targets`, (path, label) `samples`, or a Subset of such a
    dataset)."""
    if hasattr(dataset, "samples"):  # image folders: no image is decoded
        return torch.tensor([int(label) for _, label in dataset.samples], dtype=torch.int64)
    if hasattr(dataset, "labels"):
        return torch.as_tensor(dataset.labels, dtype=torch.int64)
    if hasattr(dataset, "targets"):
        return torch.as_tensor(dataset.targets, dtype=torch.int64)
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):  # torch Subset
        return labels_of(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.int64)]
    return torch.tensor([int(label) for _, label in dataset], dtype=torch.int64)


def _per_class(labels: Tensor, seed: int) -> list[Tensor]:
    """Each class's indices in a seeded random order (one generator, classes in label order)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        out.append(members[torch.randperm(len(members), generator=generator)])
    return out


def holdout_split(labels: Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(fit, held-out) indices: `fraction` of each class held out (at least one image, and at
    least one left to fit on), the rest to fit; disjoint, sorted, together all of `labels`."""
    fit, held = [], []
    for members in _per_class(labels, seed):
        n_held = min(max(1, round(fraction * len(members))), len(members) - 1)
        held += members[:n_held].tolist()
        fit += members[n_held:].tolist()
    return sorted(fit), sorted(held)


def balanced_subset(labels: Tensor, fraction: float, seed: int) -> list[int]:
    """A class-balanced `fraction` of the labels (the semi-supervised 1% / 10% subsets): the
    same number of images from every class, round(fraction * N / classes) and at least one
    (fewer only where a class has fewer), drawn with `seed`; sorted indices."""
    groups = _per_class(labels, seed)
    per_class = max(1, round(fraction * len(labels) / len(groups)))
    return sorted(i for members in groups for i in members[:per_class].tolist())
