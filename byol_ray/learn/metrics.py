"""Evaluation of learned representations: feature extraction, kNN monitor, linear probe, collapse.

Everything here works on tensors (features, labels) so the same code runs on CPU and GPU and in
one process or across Ray Train workers; the device always comes from the tensors or modules.
Distributed helpers (`shard_indices`, `gather_features`) use `torch.distributed` only when it is
initialised. This module knows nothing of Ray or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

# --------------------------------------------------------------------------- features


def _as_2d(x: Tensor) -> Tensor:
    """(N, ...) -> (N, D); safe for empty tensors, where reshape(N, -1) is ambiguous."""
    if x.dim() == 2:
        return x
    return x.unsqueeze(1) if x.dim() == 1 else x.flatten(1)


def _module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (or buffer); CPU for a module with neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: Dataset,
    transform: Callable[[Tensor], Tensor],
    batch_size: int = 256,
    device: torch.device | None = None,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Encode dataset items into features (N, D) float32 on CPU and labels (N,) int64.

    Items are `(uint8 image tensor, int label)`. The encoder runs in eval mode (BN running
    statistics, no dropout) and every submodule's mode is restored afterwards, so this can be
    called mid-training. `transform` maps a uint8 batch, already on the device, to the encoder's
    normalised float input. `device` defaults to the encoder's device. `indices` selects a subset
    in the given order (e.g. one worker's shard from `shard_indices`); by default all items.
    An empty selection gives features of shape (0, 0). `num_workers` DataLoader processes read
    (decode) the items in parallel, for datasets decoded from files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else _module_device(encoder)
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    loader = DataLoader(Subset(dataset, order), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_stack_items)
    modes = [(m, m.training) for m in encoder.modules()]
    encoder.eval()
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        for images, batch_labels in loader:
            out = encoder(transform(images.to(device)))
            if not isinstance(out, Tensor):
                raise TypeError(f"encoder must return a Tensor, got {type(out).__name__}")
            feats.append(out.flatten(1).float().cpu())
            labels.append(batch_labels)
    finally:
        for module, mode in modes:
            module.training = mode
    if not feats:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(labels)


def _stack_items(items: list[tuple[Any, int]]) -> tuple[Tensor, Tensor]:
    """(image, label) items -> (stacked images, int64 labels); images may be arrays."""
    images = torch.stack([torch.as_tensor(img) for img, _ in items])
    return images, torch.tensor([int(lbl) for _, lbl in items], dtype=torch.int64)


# --------------------------------------------------------------------------- distributed


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Strided shard `range(rank, n, world_size)` of n items: shards differ by at most one item
    and together cover every item exactly once (unlike a padded DistributedSampler)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(range(rank, n, world_size))


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_features(features: Tensor, labels: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Collect every worker's shard of (features, labels) into the full set, sorted by index.

    With torch.distributed initialised, each rank's shard (sizes may differ, even be empty)
    is padded to the largest one, all-gathered, and the padding dropped, so every rank gets the
    same full result; without it, the inputs are just sorted by `indices`. Rows sharing an index
    (e.g. a padded DistributedSampler) are kept once. Communication uses CPU tensors under gloo
    and the current CUDA device under NCCL; the result is on `features`' device.
    """
    indices = torch.as_tensor(indices, dtype=torch.int64)
    if not (features.shape[0] == labels.shape[0] == indices.shape[0]):
        raise ValueError(
            f"features, labels and indices differ in length: "
            f"{features.shape[0]}, {labels.shape[0]}, {indices.shape[0]}"
        )
    out_device = features.device
    features = _as_2d(features)
    labels = labels.to(torch.int64)
    if _dist_active() and dist.get_world_size() > 1:
        features, labels, indices = _all_gather_shards(features, labels, indices)
    indices, labels, features = indices.cpu(), labels.cpu(), features.cpu()
    order = torch.argsort(indices, stable=True)
    indices, features, labels = indices[order], features[order], labels[order]
    if indices.numel() > 1:
        keep = torch.ones_like(indices, dtype=torch.bool)
        keep[1:] = indices[1:] != indices[:-1]
        features, labels = features[keep], labels[keep]
    return features.to(out_device), labels.to(out_device)


def _all_gather_shards(
    features: Tensor, labels: Tensor, indices: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """All-gather variable-sized shards: pad rows (and feature width) to the max, then trim."""
    backend = dist.get_backend()
    comm = (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )
    world = dist.get_world_size()
    n, d = features.shape
    size = torch.tensor([n, d], dtype=torch.int64, device=comm)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s[0]) for s in sizes]
    max_n, max_d = max(counts), max(int(s[1]) for s in sizes)
    if max_n == 0:
        return features.new_empty(0, max_d), labels[:0], indices[:0]

    pad_f = torch.zeros(max_n, max_d, dtype=features.dtype, device=comm)
    pad_f[:n, :d] = features.to(comm)
    pad_l = torch.zeros(max_n, dtype=torch.int64, device=comm)
    pad_l[:n] = labels.to(comm)
    pad_i = torch.zeros(max_n, dtype=torch.int64, device=comm)
    pad_i[:n] = indices.to(comm)

    out = []
    for local in (pad_f, pad_l, pad_i):
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local)
        out.append(torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]))
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------- kNN monitor


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, Tensor]:
    """Weighted-kNN class predictions (int64, on the bank's device) for each k in ks.

    Cosine similarity between L2-normalised features; each of the k most similar bank samples
    votes for its label with weight exp(sim / temperature) [InstDisc, DINO]. k above the bank
    size is clipped to it. Weights are computed relative to each row's top similarity, which
    leaves the argmax unchanged but cannot overflow at small temperatures. Test samples are
    processed `chunk_size` at a time so memory is O(chunk_size * bank size).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    if train_features.shape[0] == 0 or train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"need a non-empty bank with one label per row: {train_features.shape[0]} features, "
            f"{train_labels.shape[0]} labels"
        )
    device = train_features.device
    bank = F.normalize(_as_2d(train_features).float(), dim=1)
    bank_labels = train_labels.to(device, torch.int64)
    if num_classes is None:
        num_classes = int(bank_labels.max()) + 1
    if int(bank_labels.min()) < 0 or int(bank_labels.max()) >= num_classes:
        raise ValueError(f"train labels must lie in [0, {num_classes})")
    n_bank = bank.shape[0]
    k_max = min(max((int(k) for k in ks), default=1), n_bank)
    preds: dict[int, list[Tensor]] = {int(k): [] for k in ks}
    test = _as_2d(test_features)
    for start in range(0, test.shape[0], chunk_size):
        query = F.normalize(test[start : start + chunk_size].to(device, torch.float32), dim=1)
        sims, idx = (query @ bank.T).topk(k_max, dim=1)  # sorted, most similar first
        weights = ((sims - sims[:, :1]) / temperature).exp()
        neighbour_labels = bank_labels[idx]
        for k in preds:
            kk = min(k, n_bank)
            votes = torch.zeros(query.shape[0], num_classes, device=device)
            votes.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            preds[k].append(votes.argmax(dim=1))
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return {k: torch.cat(p) if p else empty for k, p in preds.items()}


def knn_top1(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Weighted-kNN top-1 accuracy (%) for each k in ks: the cheap InstDisc/DINO monitor of
    representation quality during pretraining (see `knn_predict` for the rule; k is clipped to
    the bank size, keys stay the requested k). Runs on the train features' device."""
    if test_features.shape[0] == 0 or test_features.shape[0] != test_labels.shape[0]:
        raise ValueError(
            f"need a non-empty test set with one label per row: {test_features.shape[0]} "
            f"features, {test_labels.shape[0]} labels"
        )
    if num_classes is None:
        num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    preds = knn_predict(
        train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size
    )
    return {k: top1(p, test_labels) for k, p in preds.items()}


def few_label_subsets(labels: Tensor, per_class: int, draws: int, seed: int = 0) -> list[Tensor]:
    """`draws` class-balanced subsets of a labelled split: sorted indices of `per_class` items
    of every class, draw d seeded with `seed + d`, so the same seed gives the same subsets
    everywhere (the paper's fixed 1% / 10% label subsets [P §4.2], in miniature)."""
    if per_class < 1 or draws < 1:
        raise ValueError(f"per_class and draws must be >= 1, got {per_class}, {draws}")
    labels = labels.cpu().to(torch.int64)
    classes = labels.unique()
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    short = [int(c) for c, m in zip(classes, members, strict=True) if len(m) < per_class]
    if short:
        raise ValueError(f"classes {short} have fewer than {per_class} labelled items")
    subsets = []
    for d in range(draws):
        gen = torch.Generator().manual_seed(seed + d)
        picked = [m[torch.randperm(len(m), generator=gen)[:per_class]] for m in members]
        subsets.append(torch.cat(picked).sort().values)
    return subsets


def few_label_knn_top1(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    per_class: int = 5,
    draws: int = 3,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    seed: int = 0,
) -> float:
    """Few-label kNN top-1 (%): the weighted kNN of `knn_top1` whose memory bank holds only
    `per_class` labelled train items per class, averaged over `draws` fixed seeded draws
    (`few_label_subsets`). With few labels the untrained encoder's pixel-like features score
    far lower than with the whole train split, which is where a learned representation shows."""
    subsets = few_label_subsets(train_labels, per_class, draws, seed)
    if num_classes is None:
        num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    scores = [knn_top1(train_features[idx.to(train_features.device)],
                       train_labels[idx.to(train_labels.device)], test_features, test_labels,
                       ks=(k,), temperature=temperature, num_classes=num_classes)[k]
              for idx in subsets]
    return sum(scores) / len(scores)


# --------------------------------------------------------------------------- linear probe


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Top-1 accuracy (%) on the test features of a linear classifier on frozen features.

    The BYOL App. C.1 protocol on precomputed features: features standardised with the train
    mean/std, a zero-initialised linear layer trained with cross-entropy, SGD with Nesterov
    momentum 0.9, no weight decay, and a per-step cosine decay of `lr` to 0. The only randomness
    is the batch order, drawn from a CPU generator seeded with `seed`, so results are
    reproducible. Runs on the train features' device.
    """
    if train_features.shape[0] == 0 or train_features.shape[0] != train_labels.shape[0]:
        raise ValueError("need a non-empty train set with one label per row")
    if batch_size < 1 or epochs < 0 or num_classes < 1:
        raise ValueError(
            f"bad settings: batch_size={batch_size}, epochs={epochs}, num_classes={num_classes}"
        )
    device = train_features.device
    x = _as_2d(train_features).float()
    y = train_labels.to(device, torch.int64)
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant dims: centre only
    x = (x - mean) / std
    x_test = (_as_2d(test_features).to(device).float() - mean) / std

    n, d = x.shape
    batch_size = min(batch_size, n)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    classifier = nn.Linear(d, num_classes).to(device)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimiser = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=0.0
    )
    generator = torch.Generator().manual_seed(seed)
    step = 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                for group in optimiser.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = F.cross_entropy(classifier(x[batch]), y[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
    with torch.no_grad():
        logits = classifier(x_test)
    return top1(logits, test_labels)


# --------------------------------------------------------------------------- collapse, accuracy


def embedding_std(features: Tensor) -> float:
    """Collapse metric [SimSiam §4.1]: mean over dimensions of the per-dimension std of the
    L2-normalised features, times sqrt(D). About 1 when embeddings spread over the sphere,
    about 0 when every sample maps to the same point (population std, so N=1 gives 0)."""
    if features.shape[0] == 0:
        raise ValueError("embedding_std needs at least one feature row")
    z = F.normalize(_as_2d(features).float(), dim=1)
    return float(z.std(dim=0, correction=0).mean() * math.sqrt(z.shape[1]))


def is_collapsed(std: float, threshold: float = 0.1) -> bool:
    """Whether an `embedding_std` value signals collapse: below the threshold, or NaN (a
    diverged run is no better than a collapsed one)."""
    return not std >= threshold


def top1(logits_or_preds: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (%) of logits (N, C), argmax-ed, or of predicted labels (N,)."""
    preds = logits_or_preds.argmax(dim=1) if logits_or_preds.dim() == 2 else logits_or_preds
    if preds.shape[0] == 0 or preds.shape[0] != labels.shape[0]:
        raise ValueError(
            f"need equal, non-zero counts: {preds.shape[0]} predictions, {labels.shape[0]} labels"
        )
    correct = int((preds.to(labels.device) == labels).sum())
    return 100.0 * correct / labels.shape[0]
