"""The linear protocol's heads trained together (`LinearHeads`) equal separate fits: each head,
fitted on 1 or 2 gloo workers, against a plain torch fit (nn.BatchNorm1d, nn.Linear,
torch.optim.SGD) of that head alone over the same global batches restricted to its fit set."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from gloo_processes import run_gloo
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from byol_ray.learn.linear_heads import HeadSpec, LinearHeads, cosine_lr

N, DIM, CLASSES, BATCH, EPOCHS, SEED = 48, 6, 3, 8, 3, 5
LRS = (0.4, 0.05)


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (far from zero mean and unit scale, as a frozen encoder's), labels, and the
    fit sets: all but 6 samples (the lr choice), all (the refit), and 3 samples (batches
    without any of them: that head skips those steps)."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(N, DIM, generator=g) * 3 + 2
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    members = torch.ones(3, N, dtype=torch.bool)
    members[0, torch.randperm(N, generator=g)[:6]] = False
    members[2] = False
    members[2, torch.tensor([1, 20, 33])] = True
    return features, labels, members


def _specs(feature_norm: bool) -> list[HeadSpec]:
    # BatchNorm over a batch holding 1 sample of a set is undefined: the tiny set, linear only
    sets = (0, 1) if feature_norm else (0, 1, 2)
    return [HeadSpec(lr, s) for s in sets for lr in LRS]


def _global_batches(world: int = 1) -> int:
    return len(DataLoader(range(N), batch_size=BATCH // world,
                          sampler=DistributedSampler(range(N), world, 0, seed=SEED)))


def _one_pass(rank: int, world: int, out_dir: str, feature_norm: bool) -> None:
    """Every head in one pass, each worker on its DistributedSampler shard of each batch."""
    torch.manual_seed(rank)  # the heads must not depend on any worker's random state
    features, labels, members = _data()
    heads = LinearHeads(DIM, CLASSES, _specs(feature_norm), members,
                        total_steps=EPOCHS * _global_batches(), feature_norm=feature_norm)
    sampler = DistributedSampler(range(N), num_replicas=world, rank=rank, shuffle=True,
                                 seed=SEED)
    loader = DataLoader(range(N), batch_size=BATCH // world, sampler=sampler)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for indices in loader:
            heads.train_step(features[indices], labels[indices], indices)
    torch.save(heads.state_dict(), Path(out_dir) / f"rank{rank}.pt")


def _separate_fit(spec: HeadSpec, feature_norm: bool) -> tuple[nn.Linear, nn.Module]:
    """One head fitted alone, with plain torch, on its set's samples of each global batch."""
    features, labels, members = _data()
    layer = nn.Linear(DIM, CLASSES)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    norm = nn.BatchNorm1d(DIM, affine=False) if feature_norm else nn.Identity()
    optimizer = torch.optim.SGD(layer.parameters(), lr=spec.lr, momentum=0.9, nesterov=True)
    sampler = DistributedSampler(range(N), num_replicas=1, rank=0, shuffle=True, seed=SEED)
    total, step = EPOCHS * _global_batches(), 0
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        for start in range(0, N, BATCH):
            batch = order[start : start + BATCH]
            batch = batch[members[spec.fit_set, batch]]
            if len(batch):
                optimizer.param_groups[0]["lr"] = cosine_lr(spec.lr, step, total)
                loss = F.cross_entropy(layer(norm(features[batch])), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            step += 1
    return layer, norm


@pytest.mark.parametrize("feature_norm", [False, True])
@pytest.mark.parametrize("world", [1, 2])
def test_every_head_equals_its_separate_fit(tmp_path, world, feature_norm):
    if world == 1:  # no process group: the heads' own single-process path
        _one_pass(0, 1, str(tmp_path), feature_norm)
    else:
        run_gloo(partial(_one_pass, feature_norm=feature_norm), world, tmp_path)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for state in states[1:]:  # every worker holds the same heads
        assert all(torch.equal(state[k], states[0][k]) for k in state)
    state = states[0]
    features, _, members = _data()
    heads = LinearHeads(DIM, CLASSES, _specs(feature_norm), members, 1, feature_norm)
    heads.load_state_dict(state)
    for h, spec in enumerate(_specs(feature_norm)):
        layer, norm = _separate_fit(spec, feature_norm)
        torch.testing.assert_close(state[f"layers.{h}.weight"], layer.weight.detach(),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(state[f"layers.{h}.bias"], layer.bias.detach(),
                                   rtol=1e-4, atol=1e-5)
        assert layer.weight.abs().max() > 1e-3  # it learned something
        with torch.no_grad():
            expected = layer(norm.eval()(features))
        torch.testing.assert_close(heads.logits(features, h), expected, rtol=1e-4, atol=1e-4)


def test_a_head_steps_only_on_batches_holding_its_set():
    features, labels, members = _data()
    heads = LinearHeads(DIM, CLASSES, [HeadSpec(0.1, 2)], members, total_steps=10)
    outside = torch.tensor([0, 2, 3, 4])  # none of set 2
    losses = heads.train_step(features[outside], labels[outside], outside)
    assert torch.isnan(losses).all() and heads.layers[0].weight.abs().sum() == 0
    assert heads.step_count == 1  # the schedule counts the pass's steps
