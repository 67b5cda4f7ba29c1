"""Tests of learn.metrics: kNN monitor, linear probe, collapse metric, features, gathering."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from gloo_processes import run_gloo
from torch import nn

from byol_ray.learn.metrics import (
    embedding_std,
    extract_features,
    few_label_knn_top1,
    few_label_subsets,
    gather_features,
    is_collapsed,
    knn_predict,
    knn_top1,
    linear_probe,
    shard_indices,
    top1,
)

# --------------------------------------------------------------------------- helpers


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int):
    """Gaussian blobs around orthogonal-ish centres, shuffled; (features, labels)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 5
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return feats[perm], labels[perm]


def brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """Per-sample weighted kNN written out with Python loops, as the reference."""
    preds = []
    for q in test_x:
        sims = [float(torch.dot(q / q.norm(), t / t.norm())) for t in train_x]
        ranked = sorted(range(len(sims)), key=lambda j: -sims[j])[: min(k, len(sims))]
        votes = [0.0] * num_classes
        for j in ranked:
            votes[int(train_y[j])] += math.exp(sims[j] / temperature)
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(preds)


class ImageDataset:
    """Map-style dataset of (uint8 CHW image, int label), like the project's datasets."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
        self.labels = [i % 4 for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
    )


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 - 0.5


# --------------------------------------------------------------------------- kNN


def test_knn_separated_clusters_is_perfect():
    train_x, train_y = blobs(50, 5, 16, spread=0.5, seed=0)
    test_x, test_y = blobs(20, 5, 16, spread=0.5, seed=0)
    acc = knn_top1(train_x, train_y, test_x, test_y, ks=(1, 20, 200))
    assert acc == {1: 100.0, 20: 100.0, 200: 100.0}


def test_knn_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(2000, 32, generator=g), torch.randn(1000, 32, generator=g)
    train_y = torch.randint(0, 10, (2000,), generator=g)
    test_y = torch.randint(0, 10, (1000,), generator=g)
    acc = knn_top1(train_x, train_y, test_x, test_y, ks=(20, 200), num_classes=10)
    for value in acc.values():
        assert 4.0 < value < 17.0


def test_knn_clips_k_to_bank_size():
    train_x, train_y = blobs(2, 3, 8, spread=1.0, seed=2)  # bank of 6
    test_x, test_y = blobs(5, 3, 8, spread=1.0, seed=3)
    preds = knn_predict(train_x, train_y, test_x, ks=(6, 200, 10_000))
    assert set(preds) == {6, 200, 10_000}
    assert torch.equal(preds[6], preds[200]) and torch.equal(preds[6], preds[10_000])
    acc = knn_top1(train_x, train_y, test_x, test_y, ks=(6, 200))
    assert acc[6] == acc[200]


def test_knn_matches_brute_force_weighted_votes():
    g = torch.Generator().manual_seed(4)
    train_x, test_x = torch.randn(30, 5, generator=g), torch.randn(17, 5, generator=g)
    train_y = torch.randint(0, 4, (30,), generator=g)
    test_y = torch.randint(0, 4, (17,), generator=g)
    ks, temperature = (1, 3, 7, 30), 0.5
    preds = knn_predict(train_x, train_y, test_x, ks, temperature, num_classes=4, chunk_size=4)
    acc = knn_top1(train_x, train_y, test_x, test_y, ks, temperature, chunk_size=5)
    for k in ks:
        expected = brute_force_knn(train_x, train_y, test_x, k, temperature, 4)
        assert torch.equal(preds[k], expected), k
        assert acc[k] == pytest.approx(float((expected == test_y).float().mean() * 100))
    # Weighting matters: with k = bank size, unweighted voting would always pick the majority.
    assert len(set(preds[30].tolist())) > 1


def test_knn_chunking_and_small_temperature_are_stable():
    train_x, train_y = blobs(40, 4, 64, spread=3.0, seed=5)
    test_x, test_y = blobs(30, 4, 64, spread=3.0, seed=6)
    whole = knn_top1(train_x, train_y, test_x, test_y, ks=(20,), temperature=0.001)
    chunked = knn_top1(train_x, train_y, test_x, test_y, ks=(20,), temperature=0.001, chunk_size=7)
    assert whole == chunked and all(math.isfinite(v) for v in whole.values())


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_blobs_and_determinism():
    train_x, train_y = blobs(100, 5, 20, spread=1.0, seed=7)
    test_x, test_y = blobs(40, 5, 20, spread=1.0, seed=7)
    train_x, test_x = train_x * 3 + 10, test_x * 3 + 10  # standardisation must cope
    kw = dict(num_classes=5, epochs=30, lr=0.1, batch_size=64)
    acc = linear_probe(train_x, train_y, test_x, test_y, seed=0, **kw)
    assert acc >= 99.0
    assert linear_probe(train_x, train_y, test_x, test_y, seed=0, **kw) == acc


def test_linear_probe_deterministic_per_seed_on_hard_problem():
    g = torch.Generator().manual_seed(8)
    train_x, test_x = torch.randn(300, 16, generator=g), torch.randn(200, 16, generator=g)
    train_y = torch.randint(0, 3, (300,), generator=g)
    test_y = torch.randint(0, 3, (200,), generator=g)
    kw = dict(num_classes=3, epochs=5, lr=0.5, batch_size=32)
    a = linear_probe(train_x, train_y, test_x, test_y, seed=1, **kw)
    assert a == linear_probe(train_x, train_y, test_x, test_y, seed=1, **kw)
    with torch.no_grad():  # works even when the caller disabled autograd
        assert a == linear_probe(train_x, train_y, test_x, test_y, seed=1, **kw)


# --------------------------------------------------------------------------- collapse


def test_embedding_std_spread_vs_collapsed():
    g = torch.Generator().manual_seed(9)
    spread = embedding_std(torch.randn(2000, 256, generator=g))
    assert spread == pytest.approx(1.0, abs=0.05)
    assert not is_collapsed(spread)
    collapsed = embedding_std(torch.randn(1, 256, generator=g).repeat(500, 1) * 7)
    assert collapsed == pytest.approx(0.0, abs=1e-5)
    assert is_collapsed(collapsed)
    assert is_collapsed(0.05, threshold=0.1) and not is_collapsed(0.2, threshold=0.1)
    assert is_collapsed(float("nan"))


def test_top1_logits_and_preds():
    labels = torch.tensor([0, 1, 2, 1])
    assert top1(torch.tensor([0, 1, 0, 1]), labels) == 75.0
    assert top1(torch.eye(3)[[0, 1, 2, 2]], labels) == 75.0


# --------------------------------------------------------------------------- features


def test_extract_features_shapes_mode_and_subset():
    encoder, data = tiny_encoder(), ImageDataset(10)
    encoder.train()
    encoder[1].eval()  # a frozen BN layer: its own mode must survive too
    feats, labels = extract_features(encoder, data, normalise, batch_size=4)
    assert feats.shape == (10, 6) and feats.dtype == torch.float32
    assert feats.device.type == "cpu"
    assert labels.dtype == torch.int64 and labels.tolist() == data.labels
    assert encoder.training and not encoder[1].training and encoder[5].training

    encoder.eval()
    with torch.no_grad():  # eval mode was used: no dropout, BN running stats
        expected = encoder(normalise(data.images))
    encoder.train()
    torch.testing.assert_close(feats, expected)

    sub_feats, sub_labels = extract_features(encoder, data, normalise, indices=[7, 2, 5])
    torch.testing.assert_close(sub_feats, feats[[7, 2, 5]])
    assert sub_labels.tolist() == [data.labels[7], data.labels[2], data.labels[5]]
    empty, empty_labels = extract_features(encoder, data, normalise, indices=[])
    assert empty.shape[0] == 0 and empty_labels.shape == (0,)


def test_shards_gathered_locally_equal_full_extraction():
    encoder, data = tiny_encoder(), ImageDataset(11)
    full, full_labels = extract_features(encoder, data, normalise)
    parts = []
    for rank in range(3):
        shard = shard_indices(len(data), rank, 3)
        parts.append((*extract_features(encoder, data, normalise, indices=shard), shard))
    assert sorted(i for *_, s in parts for i in s) == list(range(11))
    feats, labels = gather_features(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        torch.tensor([i for p in parts for i in p[2]]),
    )
    torch.testing.assert_close(feats, full)
    assert torch.equal(labels, full_labels)


def test_gather_features_without_distributed_sorts_and_dedups():
    feats = torch.tensor([[3.0], [1.0], [2.0], [1.0]])
    labels = torch.tensor([30, 10, 20, 10])
    out_f, out_l = gather_features(feats, labels, torch.tensor([3, 1, 2, 1]))
    assert out_f.squeeze(1).tolist() == [1.0, 2.0, 3.0] and out_l.tolist() == [10, 20, 30]
    with pytest.raises(ValueError):
        shard_indices(5, 2, 2)


def _feature_of(i: int) -> list[float]:
    return [float(i), float(i) * 0.5 + 1, -float(i)]


def _gather_worker(rank: int, world: int, out_dir: str) -> None:
    """One gloo rank: gather an uneven shard, then a case where this rank's shard is empty."""
    # Uneven, reversed shards: rank 0 has 8 items, rank 1 has 3.
    mine = [i for i in range(11) if (i < 8) == (rank == 0)][::-1]
    feats = torch.tensor([_feature_of(i) for i in mine])
    labels = torch.tensor([i % 3 for i in mine])
    uneven = gather_features(feats, labels, torch.tensor(mine))
    # Rank 1 has nothing (as extract_features returns for an empty shard).
    mine = [2, 0, 1] if rank == 0 else []
    feats = torch.tensor([_feature_of(i) for i in mine]) if mine else torch.empty(0, 0)
    idx = torch.tensor(mine, dtype=torch.int64)
    with_empty = gather_features(feats, idx.clone(), idx)
    torch.save({"uneven": uneven, "with_empty": with_empty}, Path(out_dir) / f"{rank}.pt")


@pytest.mark.timeout(300)
def test_gather_features_two_gloo_processes(tmp_path):
    run_gloo(_gather_worker, 2, tmp_path)

    for rank in range(2):
        result = torch.load(tmp_path / f"{rank}.pt")
        feats, labels = result["uneven"]
        assert torch.equal(feats, torch.tensor([_feature_of(i) for i in range(11)]))
        assert labels.tolist() == [i % 3 for i in range(11)]
        feats, labels = result["with_empty"]
        assert torch.equal(feats, torch.tensor([_feature_of(i) for i in range(3)]))
        assert labels.tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- few-label kNN


def test_few_label_subsets_are_class_balanced_fixed_and_differ_between_draws():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300)]
    subsets = few_label_subsets(labels, per_class=5, draws=3, seed=0)
    assert len(subsets) == 3
    for idx in subsets:
        assert torch.equal(torch.bincount(labels[idx], minlength=10), torch.full((10,), 5))
        assert torch.equal(idx, idx.sort().values) and len(idx.unique()) == 50
    again = few_label_subsets(labels, per_class=5, draws=3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(subsets, again, strict=True))
    assert not torch.equal(subsets[0], subsets[1])
    with pytest.raises(ValueError, match="fewer than 31"):
        few_label_subsets(labels, per_class=31, draws=1)


def test_few_label_knn_is_the_mean_over_draws_of_a_small_bank():
    x, y = blobs(50, 4, 8, spread=0.05, seed=0)
    train_x, train_y, test_x, test_y = x[:160], y[:160], x[160:], y[160:]
    assert few_label_knn_top1(train_x, train_y, test_x, test_y, per_class=2, draws=3) == 100.0
    noise = torch.randn(160, 8, generator=torch.Generator().manual_seed(2))
    scores = [knn_top1(noise[idx], train_y[idx], test_x, test_y, ks=(20,), num_classes=4)[20]
              for idx in few_label_subsets(train_y, 2, 3)]
    assert few_label_knn_top1(noise, train_y, test_x, test_y, per_class=2, draws=3,
                              num_classes=4) == pytest.approx(sum(scores) / 3)
