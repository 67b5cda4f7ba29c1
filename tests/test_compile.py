"""`train.compile` (torch.compile of the training forward, inductor) takes the eager steps:
the same losses and weights over a few steps with the target's EMA between them (the
compiled graph reads the parameters that the optimiser and the EMA change in place), alone
and under DDP with gradient accumulation (`no_sync` through the compiled wrapper)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gloo_processes import run_gloo
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from byol_ray.cli.main import resolve_config
from byol_ray.core.config import MethodConfig, ModelConfig, OptimConfig
from byol_ray.jobs.pretrain.step import train_micro_batch
from byol_ray.learn.methods import BYOL, Method
from byol_ray.learn.optim import build_optimizer

STEPS = 3


def _method() -> Method:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten())
    heads = ModelConfig(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16)
    return BYOL(encoder, 8, heads, MethodConfig(tau_base=0.9, target_init="copy")).train()


def _views(step: int, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return tuple(torch.randn(batch, 3, 8, 8, generator=gen) for _ in range(2))


def _train(compiled: bool, rank: int = 0, world: int = 1, accumulate: int = 1
           ) -> tuple[list[float], Method]:
    """STEPS optimiser steps (each of `accumulate` micro-batches of this rank's share)."""
    method = _method()
    model = DistributedDataParallel(method) if world > 1 else method
    model = torch.compile(model) if compiled else model
    optimizer = build_optimizer(method, OptimConfig(weight_decay=0.01), 0.5)
    losses = []
    for k in range(STEPS * accumulate):
        views = tuple(v.chunk(world * accumulate)[rank * accumulate + k % accumulate]
                      for v in _views(k // accumulate, 8 * world * accumulate))
        outputs, step = train_micro_batch(model, optimizer, views, k, accumulate,
                                          lambda _: 0.5)
        losses.append(float(outputs["loss"].detach()))
        if step is not None:
            method.after_step(step + 1, 10)
    return losses, method


def _assert_same_run(eager: tuple[list[float], Method], compiled: tuple[list[float], Method]
                     ) -> None:
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(eager[1].state_dict().values(), compiled[1].state_dict().values(),
                    strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_steps_take_the_eager_steps():
    _assert_same_run(_train(compiled=False), _train(compiled=True))


def _ddp_compiled_and_eager(rank: int, world: int, out_dir: str) -> None:
    eager, compiled = _train(False, rank, world, 2), _train(True, rank, world, 2)
    _assert_same_run(eager, compiled)
    torch.save(compiled[0], Path(out_dir) / f"losses{rank}.pt")


@pytest.mark.slow
def test_compiled_ddp_with_accumulation_takes_the_eager_steps(tmp_path):
    run_gloo(_ddp_compiled_and_eager, 2, tmp_path)
    assert all((tmp_path / f"losses{rank}.pt").exists() for rank in range(2))


def test_compile_is_off_unless_asked():
    assert not resolve_config("cifar10", [], check_paths=False).train.compile
    assert resolve_config("cpu-mini", ["train.compile=true"], check_paths=False).train.compile
