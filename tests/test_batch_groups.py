"""Fig. 3a's protocol: one step on a batch of N x B in groups of B (`data.group_size`) is N
accumulated steps of B [P §5 "Batch size"]: the same loss, gradients, parameter update and BN
running statistics, for BYOL (beta 0 and 1) and SimCLR, on one worker and on two real workers
(gloo, DDP), with groups inside a worker and a group that spans both workers.

The method-level checks use BatchNorm's cumulative running average (momentum None): a step in
groups runs view 1 of every group before view 2, N sequential steps alternate the views, and
only the exponential average depends on that order. `GroupBatchNorm`'s own test checks the
exponential average (momentum 0.1) against N sequential BatchNorm calls.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from gloo_processes import run_gloo
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from byol_ray.cli.main import main
from byol_ray.core.config import (
    ConfigError,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    apply_overrides,
    validate,
)
from byol_ray.core.presets import get_preset
from byol_ray.jobs.pretrain.step import train_micro_batch
from byol_ray.learn.methods import BYOL, Method, SimCLR
from byol_ray.learn.models.batch_groups import GroupBatchNorm, within_groups
from byol_ray.learn.optim import build_optimizer

GLOBAL = 16  # images per optimiser step
WORLD = 2
LR = 0.5
SCENARIOS: dict[str, dict] = {
    "byol_beta0": {"beta": 0.0},
    "byol_beta1": {"beta": 1.0},
    "simclr": {"name": "simclr"},
}
ONE_WORKER_GROUPS = (4, 8)  # N = 4, 2
TWO_WORKER_GROUPS = (4, 16)  # 2 groups in each worker's 8 rows; 1 group spanning both workers


def _method(name: str = "byol", **switches) -> Method:
    """A tiny method with BatchNorm2d in the encoder and BatchNorm1d in the heads."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    heads = ModelConfig(proj_hidden_dim=8, proj_dim=4, pred_hidden_dim=8)
    kind = SimCLR if name == "simclr" else BYOL
    method = kind(encoder, 16, heads, MethodConfig(name=name, temperature=0.2, target_init="copy",
                                                   **switches))
    for module in method.modules():
        if isinstance(module, _BatchNorm):
            module.momentum = None  # the cumulative average: see the module docstring
    return method


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(GLOBAL, 3, 2, 2, generator=gen),
            torch.randn(GLOBAL, 3, 2, 2, generator=gen))


def _step(method: Method, model: nn.Module, pairs: list[tuple[torch.Tensor, ...]]) -> dict:
    """One LARS step and target update over the micro-batches `pairs` by the training loop's
    `train_micro_batch`: the mean loss, the gradients stepped on, the state after the step."""
    optimizer = build_optimizer(method, OptimConfig(weight_decay=0.01, trust_coefficient=0.1), LR)
    grads: dict[str, torch.Tensor] = {}

    def lr_of_step(_: int) -> float:  # called just before the optimiser step
        grads.update({n: p.grad.clone() for n, p in method.named_parameters()
                      if p.grad is not None})
        return LR

    losses = [train_micro_batch(model, optimizer, pair, k, len(pairs), lr_of_step)[0]["loss"]
              for k, pair in enumerate(pairs)]
    method.after_step(1, 10)
    return {"loss": torch.stack(losses).mean().item(), "grads": grads,
            "state": {k: v.detach().clone() for k, v in method.state_dict().items()}}


def _sequential(switches: dict, group: int, rows: slice = slice(None)) -> dict:
    """The reference: N = len(rows) / group accumulated steps of `group` images each."""
    method = _method(**switches)
    v1, v2 = (v[rows] for v in _views())
    return _step(method, method, list(zip(v1.split(group), v2.split(group), strict=True)))


def _grouped_on_workers(rank: int, world: int, out_dir: str) -> None:
    """One gloo rank: each scenario, one step on its half of the batch in groups."""
    results = {}
    for key, switches in SCENARIOS.items():
        for group in TWO_WORKER_GROUPS:
            method = within_groups(_method(**switches), group, GLOBAL // world, torch.device("cpu"))
            half = [v.chunk(world)[rank] for v in _views()]
            results[key, group] = _step(method, DistributedDataParallel(method), [tuple(half)])
    layer = GroupBatchNorm(_layer(), GLOBAL, dist.new_group(list(range(world))))
    x = _layer_input().chunk(world)[rank].requires_grad_()
    y = layer(x)
    y.pow(3).sum().backward()  # each worker's part of one loss over the group
    results["layer"] = {"y": y.detach(), "x_grad": x.grad, "weight_grad": layer.weight.grad,
                        "state": layer.state_dict()}
    torch.save(results, Path(out_dir) / f"{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """The results of the two gloo workers (one run shared by this module's tests)."""
    out = tmp_path_factory.mktemp("ranks")
    run_gloo(_grouped_on_workers, WORLD, out)
    return [torch.load(out / f"{r}.pt") for r in range(WORLD)]


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal up to float32 rounding (atol: the gradient of a bias before a BatchNorm is zero
    up to rounding, and the synchronised statistics round differently)."""
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-5, atol=1e-5,
                                   msg=lambda text, name=name: f"{name}: {text}")


@pytest.mark.parametrize("group", ONE_WORKER_GROUPS)
@pytest.mark.parametrize("key", SCENARIOS)
def test_one_step_in_groups_is_n_accumulated_steps_on_one_worker(key, group):
    expected = _sequential(SCENARIOS[key], group)
    method = within_groups(_method(**SCENARIOS[key]), group, GLOBAL, torch.device("cpu"))
    result = _step(method, method, [_views()])
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    _assert_close(result["grads"], expected["grads"])
    _assert_close(result["state"], expected["state"])  # parameters, target, BN statistics
    # Groups change the step: the whole batch at once is not N steps of B.
    whole = _sequential(SCENARIOS[key], GLOBAL)
    assert whole["loss"] != pytest.approx(expected["loss"], rel=1e-4)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("group", TWO_WORKER_GROUPS)
@pytest.mark.parametrize("key", SCENARIOS)
def test_one_step_in_groups_is_n_accumulated_steps_on_two_workers(ranks, key, group):
    expected = _sequential(SCENARIOS[key], group)
    assert sum(r[key, group]["loss"] for r in ranks) / WORLD == pytest.approx(
        expected["loss"], rel=1e-5)
    per_worker = GLOBAL // WORLD
    for rank, result in enumerate(r[key, group] for r in ranks):
        _assert_close(result["grads"], expected["grads"])
        params = {n for n, _ in _method(**SCENARIOS[key]).named_parameters()}
        _assert_close({n: v for n, v in result["state"].items() if n in params},
                      {n: v for n, v in expected["state"].items() if n in params})
        # BN running statistics: a group spanning the workers is synchronised; groups inside
        # a worker update its own statistics, as sequential steps of its own groups would
        # (DDP broadcasts rank 0's buffers before each forward).
        rows = slice(None) if group > per_worker else slice(rank * per_worker,
                                                            (rank + 1) * per_worker)
        own = _sequential(SCENARIOS[key], group, rows)["state"]
        _assert_close({n: v for n, v in result["state"].items() if n not in params},
                      {n: v for n, v in own.items() if n not in params})


def _layer() -> nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5, momentum=0.1)
    nn.init.normal_(bn.weight)
    return bn


def _layer_input() -> torch.Tensor:
    return torch.randn(GLOBAL, 5, 3, 3, generator=torch.Generator().manual_seed(2)) * 3 + 1


@pytest.mark.timeout(300)
def test_a_group_spanning_workers_is_batch_norm_over_its_rows(ranks):
    """On the CPU (gloo): output, gradients and running statistics (momentum 0.1)."""
    bn, x = _layer(), _layer_input().requires_grad_()
    y = bn(x)
    y.pow(3).sum().backward()
    layers = [r["layer"] for r in ranks]
    for rank, result in enumerate(layers):
        torch.testing.assert_close(result["y"], y.detach().chunk(WORLD)[rank])
        torch.testing.assert_close(result["x_grad"], x.grad.chunk(WORLD)[rank],
                                   rtol=1e-5, atol=1e-4)
        _assert_close(result["state"], bn.state_dict())
    torch.testing.assert_close(sum(r["weight_grad"] for r in layers), bn.weight.grad,
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(12, 5), (12, 5, 3, 3)])
def test_group_batch_norm_is_n_sequential_batch_norm_calls(shape):
    """Each group normalised by its own statistics, the running statistics one momentum
    step per group in order; eval mode is BatchNorm's."""
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + 1
    bn = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(5, momentum=0.1)
    nn.init.normal_(bn.weight)
    grouped, reference = GroupBatchNorm(copy.deepcopy(bn), 4, None), copy.deepcopy(bn)
    expected = torch.cat([reference(rows) for rows in x.split(4)])
    torch.testing.assert_close(grouped(x), expected)
    _assert_close(grouped.state_dict(), reference.state_dict())
    assert int(grouped.num_batches_tracked) == 3
    grouped.eval(), reference.eval()
    torch.testing.assert_close(grouped(x), reference(x))


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        (["data.group_size=48"], "must divide the 128 rows per worker"),
        (["data.group_size=96"], "must divide the 128 rows per worker"),
        (["data.group_size=192"], "a multiple of 128"),
        (["scaling.num_workers=4", "data.group_size=192"], "divides data.batch_size=256"),
        (["data.group_size=512"], "[0, 256]"),
        (["data.group_size=-1"], "allowed: >= 0"),
    ],
)
def test_bad_group_sizes_name_the_field(overrides, hint):
    cfg = apply_overrides(get_preset("cpu-mini"), ["data.batch_size=256", *overrides])  # 2 workers
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert error.value.field == "data.group_size" and hint in str(error.value)


@pytest.mark.parametrize("group", [0, 32, 64, 128, 256])
def test_group_sizes_within_a_worker_or_of_whole_workers_are_valid(group):
    validate(apply_overrides(get_preset("cpu-mini"), ["data.batch_size=256",
                                                      f"data.group_size={group}"]))


def test_a_bad_group_size_exits_2_before_anything_runs(capsys):
    assert main(["show-config", "--preset", "cpu-mini", "--set", "data.group_size=48"]) == 2
    assert "data.group_size: 48" in capsys.readouterr().err
