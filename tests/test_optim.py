"""LARS, parameter groups and the lr / tau schedules [P App. C, §3.2]."""

import io
import math

import pytest
import torch
from torch import nn

from byol_ray.core.config import OptimConfig
from byol_ray.learn.optim import LARS, build_optimizer, lr_at, param_groups
from byol_ray.learn.target_memory import tau_at


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_param_groups_exclude_bias_and_bn():
    net = _net()
    net[3].weight.requires_grad_(False)  # frozen parameters are left out
    groups = param_groups(net, 0.01, exclude_bias_and_bn=True)
    decay, excluded = groups
    assert decay["weight_decay"] == 0.01 and decay["lars_exclude"] is False
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True
    assert {id(p) for p in decay["params"]} == {id(net[0].weight)}
    expected = [net[0].bias, net[1].weight, net[1].bias, net[3].bias]
    assert {id(p) for p in excluded["params"]} == {id(p) for p in expected}


def test_param_groups_without_exclusion_is_one_group():
    net = _net()
    (group,) = param_groups(net, 0.01, exclude_bias_and_bn=False)
    assert group["lars_exclude"] is False and group["weight_decay"] == 0.01
    assert len(group["params"]) == len(list(net.parameters()))


def test_lars_excluded_param_is_plain_momentum_sgd():
    gen = torch.Generator().manual_seed(0)
    bias = nn.Parameter(torch.randn(5, generator=gen))
    bias_ref = nn.Parameter(bias.detach().clone())
    # A non-zero weight decay on the excluded group must be ignored too.
    lars = LARS([{"params": [bias], "lars_exclude": True, "weight_decay": 0.5}], lr=0.1,
                momentum=0.9, trust_coefficient=1e-3)
    sgd = torch.optim.SGD([bias_ref], lr=0.1, momentum=0.9)
    for _ in range(3):
        grad = torch.randn(5, generator=gen)
        bias.grad, bias_ref.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
        torch.testing.assert_close(bias, bias_ref)


def test_lars_trust_ratio_on_first_step():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    w.grad = torch.tensor([1.0, 0.0])
    lr, wd, eta = 0.5, 0.1, 1e-2
    lars = LARS([w], lr=lr, momentum=0.9, weight_decay=wd, trust_coefficient=eta)
    before = w.detach().clone()
    update = w.grad + wd * before
    expected = before - lr * eta * before.norm() / update.norm() * update
    lars.step()
    torch.testing.assert_close(w.detach(), expected)


def test_lars_zero_norms_use_ratio_one():
    w = nn.Parameter(torch.zeros(3))  # ||w|| = 0 -> ratio 1
    w.grad = torch.tensor([1.0, 2.0, 3.0])
    still = nn.Parameter(torch.ones(3))  # zero gradient, no decay -> ||u|| = 0
    still.grad = torch.zeros(3)
    LARS([w, still], lr=0.1, momentum=0.9, trust_coefficient=1e-3).step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, -0.2, -0.3]))
    assert torch.equal(still.detach(), torch.ones(3))


def _lars_by_formula(w, grads, rates, wd, eta, momentum, clip):
    """LARS written from the formula: u = g + wd w, ratio = eta ||w|| / ||u|| (with clip:
    min(ratio / lr, 1), solo-learn's LARC), m <- momentum m + ratio u, w <- w - lr m."""
    m = torch.zeros_like(w)
    for g, lr in zip(grads, rates, strict=True):
        u = g + wd * w
        ratio = (eta * w.norm() / u.norm()).item()
        if clip:
            ratio = min(ratio / lr, 1.0) if lr > 0 else 1.0
        m = momentum * m + ratio * u
        w = w - lr * m
    return w


def _lars_steps(w0, grads, rates, **kwargs):
    w = nn.Parameter(w0.clone())
    lars = LARS([w], lr=rates[0], **kwargs)
    for g, lr in zip(grads, rates, strict=True):
        lars.param_groups[0]["lr"] = lr
        w.grad = g.clone()
        lars.step()
    return w.detach()


@pytest.mark.parametrize("clip", [False, True])
def test_lars_follows_the_formula_as_the_learning_rate_changes(clip):
    gen = torch.Generator().manual_seed(7)
    w0 = torch.randn(6, generator=gen) * 2
    grads = [torch.randn(6, generator=gen) for _ in range(6)]
    rates = [0.0, 0.5, 1.0, 2.0, 0.7, 0.1]  # warm-up from 0, then decay
    hyper = {"wd": 0.1, "eta": 0.3, "momentum": 0.9}
    expected = _lars_by_formula(w0, grads, rates, clip=clip, **hyper)
    got = _lars_steps(w0, grads, rates, weight_decay=hyper["wd"], momentum=hyper["momentum"],
                      trust_coefficient=hyper["eta"], clip_lr=clip)
    torch.testing.assert_close(got, expected)
    # The learning rate folded into the buffer (m <- mu m + lr ratio u; w <- w - m) differs.
    folded, m = w0.clone(), torch.zeros(6)
    for g, lr in zip(grads, rates, strict=True):
        u = g + hyper["wd"] * folded
        m = hyper["momentum"] * m + lr * hyper["eta"] * folded.norm() / u.norm() * u
        folded = folded - m
    assert not torch.allclose(got, folded, atol=1e-3)


def test_lars_clip_caps_the_per_parameter_rate_at_lr():
    w0, g = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.1])  # ratio = eta * 5 / 0.1
    for lr, rate in [(0.01, 0.01), (100.0, 50.0)]:  # rate = min(eta ||w|| / ||g||, lr)
        w = _lars_steps(w0, [g], [lr], momentum=0.9, trust_coefficient=1.0, clip_lr=True)
        torch.testing.assert_close(w, w0 - rate * g)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer(name, kind):
    opt = build_optimizer(_net(), OptimConfig(name=name, weight_decay=0.01), lr=0.3)
    assert isinstance(opt, kind)
    assert [g["lars_exclude"] for g in opt.param_groups] == [False, True]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert all(g["lr"] == 0.3 for g in opt.param_groups)


def test_build_optimizer_unknown():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(_net(), OptimConfig(name="adam"), lr=0.1)


def test_lr_schedule_endpoints():
    total, warmup, peak = 100, 10, 2.0
    assert lr_at(0, total, warmup, peak) == 0.0
    assert lr_at(5, total, warmup, peak) == pytest.approx(1.0)
    assert lr_at(warmup, total, warmup, peak) == peak
    assert lr_at(55, total, warmup, peak) == pytest.approx(1.0)  # half-way through the cosine
    assert lr_at(total, total, warmup, peak) == 0.0
    assert lr_at(total + 5, total, warmup, peak) == 0.0
    assert lr_at(0, total, 0, peak) == peak  # no warm-up
    rates = [lr_at(k, total, warmup, peak) for k in range(total + 1)]
    assert all(a <= b for a, b in zip(rates[:warmup], rates[1 : warmup + 1], strict=True))
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :], strict=False))


@pytest.mark.parametrize("tau_base", [0.0, 0.3, 0.99, 0.996, 1.0])
def test_tau_schedule_endpoints_and_monotone(tau_base):
    total = 1000
    assert tau_at(0, total, tau_base) == tau_base
    assert tau_at(total, total, tau_base) == 1.0
    assert tau_at(total + 1, total, tau_base) == 1.0
    taus = [tau_at(k, total, tau_base) for k in range(total + 1)]
    assert all(a <= b for a, b in zip(taus, taus[1:], strict=False))
    mid = tau_at(total // 2, total, tau_base)
    assert mid == pytest.approx((1 + tau_base) / 2)


def test_tau_formula_and_constant():
    k, total, base = 250, 1000, 0.9
    expected = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
    assert tau_at(k, total, base) == pytest.approx(expected, abs=1e-15)
    assert tau_at(k, total, base, "constant") == base
    assert tau_at(total, total, base, "constant") == base
    with pytest.raises(ValueError, match="unknown tau schedule"):
        tau_at(k, total, base, "linear")


def _mixed_params(gen: torch.Generator) -> dict[str, nn.Parameter]:
    """A decayed conv weight, a zero weight (||w|| = 0), one whose gradient comes late, one
    that never gets a gradient, a bias and a BN-like scale whose gradient is zero."""
    return {
        "conv": nn.Parameter(torch.randn(4, 3, 3, 3, generator=gen)),
        "zero": nn.Parameter(torch.zeros(5)),
        "late": nn.Parameter(torch.randn(3, 3, generator=gen)),
        "never": nn.Parameter(torch.randn(2, generator=gen)),
        "bias": nn.Parameter(torch.randn(4, generator=gen)),
        "still": nn.Parameter(torch.ones(6)),
    }


def _lars_over(params: dict[str, nn.Parameter], foreach: bool, clip: bool) -> LARS:
    decayed = [params[k] for k in ("conv", "zero", "late", "never")]
    excluded = [params[k] for k in ("bias", "still")]
    return LARS([{"params": decayed, "weight_decay": 0.1},
                 {"params": excluded, "weight_decay": 0.0, "lars_exclude": True}],
                lr=0.0, momentum=0.9, trust_coefficient=0.02, clip_lr=clip, foreach=foreach)


def _run(params: dict[str, nn.Parameter], lars: LARS, rates: list[float], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for step, lr in enumerate(rates):
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=gen)
        params["late"].grad = None if step < 2 else params["late"].grad
        params["never"].grad = None
        params["still"].grad = torch.zeros_like(params["still"])
        for group in lars.param_groups:
            group["lr"] = lr
        lars.step()


def _assert_same(a: dict, lars_a: LARS, b: dict, lars_b: LARS) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7, msg=name)
        state_a, state_b = lars_a.state.get(a[name], {}), lars_b.state.get(b[name], {})
        assert state_a.keys() == state_b.keys(), name
        if state_a:
            torch.testing.assert_close(state_a["momentum_buffer"], state_b["momentum_buffer"],
                                       rtol=1e-6, atol=1e-7, msg=name)


def _twin(params: dict[str, nn.Parameter]) -> dict[str, nn.Parameter]:
    return {k: nn.Parameter(p.detach().clone()) for k, p in params.items()}


@pytest.mark.parametrize("clip", [False, True])
def test_lars_foreach_equals_the_per_parameter_step(clip):
    """The multi-tensor step takes the per-parameter step's steps: weight decay, the ratio
    (clipped or not, 1 where a norm is 0, 1 at lr 0 when clipped), momentum, a gradient that
    arrives late (its buffer starts then), one that never does (no state), excluded groups."""
    reference = _mixed_params(torch.Generator().manual_seed(0))
    fused, start = _twin(reference), _twin(reference)
    per_param = _lars_over(reference, foreach=False, clip=clip)
    multi = _lars_over(fused, foreach=True, clip=clip)
    rates = [0.0, 0.5, 1.5, 0.2, 0.0, 0.7]  # warm-up from 0, a peak, a decay back to 0
    _run(reference, per_param, rates, seed=1)
    _run(fused, multi, rates, seed=1)
    _assert_same(reference, per_param, fused, multi)
    assert "momentum_buffer" not in multi.state[fused["never"]]
    assert torch.equal(fused["still"].detach(), torch.ones(6))  # zero gradient, no decay
    assert not torch.equal(fused["conv"], start["conv"])  # it did move


def test_lars_state_dict_round_trip_between_the_two_steps():
    """A checkpoint of the per-parameter optimiser (what runs saved before the multi-tensor
    step) loads into the multi-tensor one and both continue alike; the state dicts have the
    same layout, so a new checkpoint loads into the per-parameter step too."""
    reference = _mixed_params(torch.Generator().manual_seed(2))
    per_param = _lars_over(reference, foreach=False, clip=True)
    _run(reference, per_param, [0.1, 0.4, 0.8], seed=3)
    buffer = io.BytesIO()
    torch.save(per_param.state_dict(), buffer)
    resumed = _twin(reference)
    multi = _lars_over(resumed, foreach=True, clip=False)
    buffer.seek(0)
    multi.load_state_dict(torch.load(buffer, weights_only=True))
    assert [g["clip_lr"] for g in multi.param_groups] == [True, True]  # the checkpoint's
    _run(reference, per_param, [0.8, 0.3], seed=4)
    _run(resumed, multi, [0.8, 0.3], seed=4)
    _assert_same(reference, per_param, resumed, multi)
    saved_old, saved_new = per_param.state_dict(), multi.state_dict()
    assert saved_old["param_groups"] == saved_new["param_groups"]
    assert {k: v.keys() for k, v in saved_old["state"].items()} == {
        k: v.keys() for k, v in saved_new["state"].items()}
