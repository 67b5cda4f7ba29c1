"""Two real workers (gloo on CPU, DDP) each holding half of a batch compute what one process
computes on the whole batch: the same loss and gradients for SimCLR's NT-Xent and for BYOL's
beta > 0 variants, no all-gather for beta = 0, and the same update when a step accumulates
micro-batches (under DDP's no_sync) as one step on the larger batch; and with a gather that
returns no gradient (what torch's functional all-gather did in some versions) substituted for
ours, the gradients differ: these tests would catch it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from gloo_processes import run_gloo
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile

from byol_ray.core.config import MethodConfig, ModelConfig, OptimConfig
from byol_ray.jobs.pretrain.step import (
    average_pending_gradients,
    restore_gradients,
    train_micro_batch,
)
from byol_ray.learn.methods import BYOL, Method, SimCLR, losses
from byol_ray.learn.optim import build_optimizer

WORLD = 2
SCENARIOS: dict[str, dict] = {
    "simclr": {"name": "simclr"},
    "byol_beta1_no_predictor_no_target": {"beta": 1.0, "predictor": False,
                                          "target_network": False},
    "byol_beta1": {"beta": 1.0},  # predictor and target network: Table 5b's row (yes, yes, 1)
    "byol_beta0": {"beta": 0.0},
}
MICRO_BATCHES = 2  # accumulated per optimiser step
LR = 0.5


def _method(name: str = "byol", **switches) -> Method:
    """A tiny method whose BN layers use running statistics (eval), so rows are independent."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    heads = ModelConfig(proj_hidden_dim=8, proj_dim=4, pred_hidden_dim=8)
    kind = SimCLR if name == "simclr" else BYOL
    return kind(encoder, 6, heads, MethodConfig(name=name, temperature=0.2,
                                                target_init="copy", **switches)).eval()


def _views(batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 2, 2, generator=gen), torch.randn(batch, 3, 2, 2, generator=gen)


def _grads(method: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


def _accumulated_update(rank: int, world: int, resume_mid_step: bool = False) -> dict:
    """One LARS step over MICRO_BATCHES micro-batches of this worker's share of 16 images.

    `resume_mid_step`: after the first micro-batch, average the pending gradients as a
    checkpoint does and continue on a fresh copy restored from them, as a resumed run does.
    """

    def fresh() -> tuple[Method, nn.Module, torch.optim.Optimizer]:
        method = _method(beta=0.0)
        model = DistributedDataParallel(method) if world > 1 else method
        config = OptimConfig(weight_decay=0.01, trust_coefficient=0.1)
        return method, model, build_optimizer(method, config, LR)

    method, model, optimizer = fresh()
    v1, v2 = (v.chunk(world)[rank].chunk(MICRO_BATCHES) for v in _views(16))
    first_grads = {}
    for k in range(MICRO_BATCHES):
        _, step = train_micro_batch(model, optimizer, (v1[k], v2[k]), k, MICRO_BATCHES,
                                    lambda _: LR)
        assert step == (0 if k == MICRO_BATCHES - 1 else None)
        if k == 0:
            first_grads = _grads(method)
            if resume_mid_step:  # the optimiser has no state before its first step
                pending = average_pending_gradients(method)
                for grad in pending if world > 1 else []:  # rank 0 saves, every rank loads
                    if grad is not None:
                        dist.broadcast(grad, src=0)
                method, model, optimizer = fresh()
                restore_gradients(method, pending)
    return {"params": {n: p.detach().clone() for n, p in method.named_parameters()},
            "first_grads": first_grads}


def _scenarios(rank: int, world: int) -> dict:
    """Each scenario's loss and DDP-averaged gradients on this rank's half of the batch."""
    results: dict = {}
    for key, switches in SCENARIOS.items():
        method = _method(**switches)
        model = DistributedDataParallel(method)
        half = [v.chunk(world)[rank] for v in _views()]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss = model(*half)["loss"]
            loss.backward()
        gathered = any("all_gather" in event.name for event in prof.events())
        results[key] = {"loss": loss.item(), "grads": _grads(method), "gathered": gathered}
    return results


def _worker(rank: int, world: int, out_dir: str) -> None:
    """One gloo rank: every scenario on its half of the batch, then the accumulated steps."""
    results = _scenarios(rank, world)
    results["accumulation"] = _accumulated_update(rank, world)
    results["accumulation_resumed"] = _accumulated_update(rank, world, resume_mid_step=True)
    torch.save(results, Path(out_dir) / f"{rank}.pt")


def _gather_without_gradient(rows: torch.Tensor) -> torch.Tensor:
    """Right rows, no gradient through them: the all-gather of torch versions without autograd."""
    parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, rows.detach().contiguous())
    return torch.cat(parts)


def _worker_gradient_free_gather(rank: int, world: int, out_dir: str) -> None:
    """The scenarios with the losses' gather (our injection point) replaced by one without
    gradient, in this spawned process only."""
    losses.gather = _gather_without_gradient
    torch.save(_scenarios(rank, world), Path(out_dir) / f"{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """The results of the two gloo workers (one run shared by this module's tests)."""
    out = tmp_path_factory.mktemp("ranks")
    run_gloo(_worker, WORLD, out)
    return [torch.load(out / f"{r}.pt") for r in range(WORLD)]


def _single_process(key: str) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and gradients of one process holding the whole batch."""
    method = _method(**SCENARIOS[key])
    loss = method(*_views())["loss"]
    loss.backward()
    return loss.item(), _grads(method)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("key", SCENARIOS)
def test_two_workers_compute_the_global_batch_loss_and_gradients(ranks, key):
    loss, expected = _single_process(key)
    # The workers' mean loss (what train/loss logs) is the loss of the whole batch ...
    assert sum(r[key]["loss"] for r in ranks) / WORLD == pytest.approx(loss, rel=1e-5)
    # ... and after DDP's averaging every worker holds the whole batch's gradient.
    for r in ranks:
        assert r[key]["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(r[key]["grads"][name], grad, rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(300)
def test_only_the_contrastive_terms_gather_and_without_gather_they_would_differ(ranks):
    for key, switches in SCENARIOS.items():
        contrastive = switches.get("name") == "simclr" or switches["beta"] > 0
        assert [r[key]["gathered"] for r in ranks] == [contrastive] * WORLD, key
        if contrastive:  # each half alone (local negatives only) is not the global loss
            halves = zip(*(v.chunk(WORLD) for v in _views()), strict=True)
            local = sum(_method(**switches)(*h)["loss"].item() for h in halves) / WORLD
            assert local != pytest.approx(_method(**switches)(*_views())["loss"].item(),
                                          rel=1e-3)


@pytest.mark.timeout(300)
def test_accumulated_micro_batches_update_as_one_larger_batch_on_one_and_two_workers(ranks):
    """Also when a checkpoint inside the step is resumed (pending gradients averaged, restored)."""
    method = _method(beta=0.0)
    optimizer = build_optimizer(method, OptimConfig(weight_decay=0.01, trust_coefficient=0.1), LR)
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    assert train_micro_batch(method, optimizer, _views(16), 0, 1, lambda _: LR)[1] == 0
    expected = {n: p.detach() for n, p in method.named_parameters()}
    one_worker = [_accumulated_update(0, 1, resume)["params"] for resume in (False, True)]
    two_workers = [r[key]["params"] for r in ranks
                   for key in ("accumulation", "accumulation_resumed")]
    for result in one_worker + two_workers:
        for name, value in expected.items():
            torch.testing.assert_close(result[name], value, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(before[n], expected[n]) for n in expected)
    # no_sync: after the first micro-batch each worker still holds its own gradient.
    first = [r["accumulation"]["first_grads"] for r in ranks]
    assert any(not torch.allclose(first[0][n], first[1][n]) for n in first[0])


@pytest.mark.timeout(300)
def test_a_gather_without_gradient_gives_other_gradients(tmp_path):
    """The check above fails for a gather that returns no gradient (same losses, other
    gradients) wherever gradient flows through the gathered columns: SimCLR and beta = 1
    without a target network (a target network's columns carry no gradient anyway)."""
    run_gloo(_worker_gradient_free_gather, WORLD, tmp_path)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(WORLD)]
    for key in ("simclr", "byol_beta1_no_predictor_no_target"):
        loss, expected = _single_process(key)
        assert sum(r[key]["loss"] for r in ranks) / WORLD == pytest.approx(loss, rel=1e-5)
        for r in ranks:
            assert r[key]["gathered"]
            assert any(not torch.allclose(r[key]["grads"][name], grad, rtol=1e-5, atol=1e-6)
                       for name, grad in expected.items()), key
