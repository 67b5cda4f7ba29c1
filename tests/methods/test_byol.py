"""BYOL: symmetric loss, stop-gradient target, exact EMA, Table 5 switches, dispatch."""

import pytest
import torch
from torch import nn

from byol_ray.core import methods
from byol_ray.core.config import (
    Config,
    ConfigError,
    MethodConfig,
    ModelConfig,
    OptimConfig,
)
from byol_ray.learn.methods import (
    BYOL,
    Method,
    RandomInit,
    SimCLR,
    build_method,
    method_names,
    register,
)
from byol_ray.learn.methods.losses import regression_loss
from byol_ray.learn.models import build_encoder, mlp
from byol_ray.learn.optim import build_optimizer
from byol_ray.learn.target_memory import init_share, tau_at

# A 4-d small CNN: the independent target is drawn from the same config as the online encoder.
HEADS = ModelConfig(encoder="small_cnn", width=1, proj_hidden_dim=8, proj_dim=4,
                    pred_hidden_dim=8)


def _encoder() -> nn.Module:
    return build_encoder(HEADS)[0]


def _byol(**method) -> BYOL:
    torch.manual_seed(0)
    return BYOL(_encoder(), 4, HEADS, MethodConfig(**method))


def _views(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 8, 8, generator=gen), torch.randn(batch, 3, 8, 8, generator=gen)


def _online(model: BYOL) -> nn.Sequential:
    return nn.Sequential(model.encoder, model.projector)


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in [*module.parameters(), *module.buffers()]]


def _train_step(model: BYOL) -> None:
    opt = build_optimizer(model, OptimConfig(name="sgd", weight_decay=0.0), lr=0.5)
    opt.zero_grad()
    model(*_views())["loss"].backward()
    opt.step()


@pytest.mark.parametrize("method", [{}, {"beta": 0.5}, {"target_network": False}])
def test_loss_symmetric_in_view_order(method):
    model = _byol(**method)
    v1, v2 = _views()
    torch.testing.assert_close(model(v1, v2)["loss"], model(v2, v1)["loss"])


def test_loss_is_paper_formula():
    model = _byol()
    v1, v2 = _views()
    out = model(v1, v2)
    assert set(out) == {"loss"}  # nothing computed that nobody logs
    q1, q2 = (model.predictor(model.projector(model.encoder(v))) for v in (v1, v2))
    z1, z2 = model.target(v1), model.target(v2)
    torch.testing.assert_close(out["loss"], regression_loss(q1, z2) + regression_loss(q2, z1))


def test_beta_one_without_predictor_or_target_is_simclr():
    temperature = 0.1
    byol = _byol(predictor=False, target_network=False, beta=1.0, temperature=temperature)
    simclr = SimCLR(byol.encoder, 4, HEADS, MethodConfig(name="simclr", temperature=temperature))
    simclr.projector = byol.projector
    v1, v2 = _views(6)
    torch.testing.assert_close(byol(v1, v2)["loss"],
                               4 + 4 * temperature * simclr(v1, v2)["loss"])


def test_target_forward_builds_no_autograd_graph():
    model = _byol(beta=0.5)
    v1, _ = _views()
    online_z = model.projector(model.encoder(v1))
    target_z = model._targets(v1, online_z)
    assert target_z.grad_fn is None and not target_z.requires_grad


def test_target_init_copy_starts_as_copy_of_online():
    model = _byol(target_init="copy")
    for t, o in zip(_snapshot(model.target), _snapshot(_online(model)), strict=True):
        assert torch.equal(t, o)


def test_independent_target_is_a_second_draw_of_the_online_builders():
    """As DeepMind's `_make_initial_state` (rng_online, rng_target): the target is encoder +
    projector built again, the seeded generator's next numbers, so every worker (same seed)
    holds the same target, and it is not the online network."""
    model = _byol()
    torch.manual_seed(0)
    encoder, projector = _encoder(), mlp(4, 8, 4)
    mlp(4, 8, 4)  # the predictor
    expected = nn.Sequential(_encoder(), mlp(4, 8, 4))
    assert model.target.state_dict().keys() == expected.state_dict().keys()
    for t, want in zip(_snapshot(model.target), _snapshot(expected), strict=True):
        assert torch.equal(t, want)
    for t, t_again in zip(_snapshot(model.target), _snapshot(_byol().target), strict=True):
        assert torch.equal(t, t_again)
    online = nn.Sequential(encoder, projector)
    for o, o_model in zip(_snapshot(online), _snapshot(_online(model)), strict=True):
        assert torch.equal(o, o_model)  # the online draw is unchanged by the target's
    assert any(not torch.equal(t, o) for t, o in
               zip(model.target.parameters(), _online(model).parameters(), strict=True))


def test_independent_target_needs_the_online_encoders_config():
    with pytest.raises(ValueError, match="build both from one config"):
        BYOL(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)), 4, HEADS, MethodConfig())


def test_no_gradient_reaches_target():
    model = _byol()
    model(*_views())["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target.parameters())
    assert all(p.grad is not None for p in _online(model).parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_optimizer_skips_target_and_ema_follows_formula():
    model = _byol(tau_base=0.9)
    target_before = _snapshot(model.target)
    online_before = _snapshot(_online(model))
    _train_step(model)
    n_params = len(list(model.target.parameters()))
    # The optimiser step changes the online parameters but not the target's.
    for t, t0 in zip(_snapshot(model.target)[:n_params], target_before, strict=False):
        assert torch.equal(t, t0)
    assert any(not torch.equal(o, o0) for o, o0 in
               zip(_snapshot(_online(model)), online_before, strict=True))

    online_now = _snapshot(_online(model))
    logged = model.after_step(3, 10)
    tau = tau_at(3, 10, 0.9)
    assert logged == {"tau": tau, "target_init_share": pytest.approx(init_share(10, 0.9, steps=3))}
    target_now = _snapshot(model.target)
    for xi, xi0, theta in zip(target_now[:n_params], target_before, online_now, strict=False):
        torch.testing.assert_close(xi, tau * xi0 + (1 - tau) * theta)
    for buf, online_buf in zip(target_now[n_params:], online_now[n_params:], strict=True):
        assert torch.equal(buf, online_buf)  # BN statistics are copied


@pytest.mark.parametrize("tau_base", [0.0, 0.7, 1.0])
def test_fused_ema_equals_the_loop_bit_for_bit(tau_base):
    model = _byol(tau_base=tau_base, tau_schedule="constant")
    _train_step(model)  # online and target now differ
    expected = [xi.detach().clone() for xi in model.target.parameters()]
    for xi, theta in zip(expected, _online(model).parameters(), strict=True):
        xi.mul_(tau_base).add_(theta.detach(), alpha=1.0 - tau_base)
    model.after_step(1, 10)
    for xi, want in zip(model.target.parameters(), expected, strict=True):
        assert torch.equal(xi, want)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_tau_one_keeps_a_fixed_random_target_that_never_equalled_online(schedule):
    """Table 5a's tau = 1 row: a constant random network of its own (not the online init)."""
    model = _byol(tau_base=1.0, tau_schedule=schedule)

    def differs_from_online() -> bool:
        return all(not torch.equal(t, o) for t, o in zip(
            model.target.parameters(), _online(model).parameters(), strict=True) if t.dim() > 1)

    before = [p.detach().clone() for p in model.target.parameters()]
    assert differs_from_online()  # every weight matrix and kernel, from the start
    for step in range(3):
        _train_step(model)
        assert model.after_step(step, 3) == {"tau": 1.0, "target_init_share": 1.0}
        for t, t0 in zip(model.target.parameters(), before, strict=True):
            assert torch.equal(t, t0)
        assert differs_from_online()


def test_tau_zero_makes_target_equal_online():
    model = _byol(tau_base=0.0, tau_schedule="constant")
    _train_step(model)
    model.after_step(5, 10)
    for t, o in zip(_snapshot(model.target), _snapshot(_online(model)), strict=True):
        assert torch.equal(t, o)


def test_cosine_tau_reaches_one_at_the_end():
    model = _byol(tau_base=0.99)
    assert model.after_step(0, 10)["tau"] == 0.99
    assert model.after_step(10, 10)["tau"] == 1.0


def test_no_predictor_is_identity():
    model = _byol(predictor=False)
    assert isinstance(model.predictor, nn.Identity)
    assert torch.isfinite(model(*_views())["loss"])


def test_no_target_network_backpropagates_through_both_sides():
    model = _byol(target_network=False, predictor=False)
    assert model.target is None
    assert model.after_step(1, 10) == {}
    online_params = list(_online(model).parameters())
    assert len(list(model.parameters())) == len(online_params)
    v1, v2 = _views()
    model(v1, v2)["loss"].backward()
    grads = [p.grad.clone() for p in online_params]

    def side(v):
        return model.projector(model.encoder(v))

    def grads_of(loss):
        return torch.autograd.grad(loss, online_params)

    z1, z2 = side(v1), side(v2)
    both_sides = grads_of(regression_loss(z1, z2) + regression_loss(z2, z1))
    z1, z2 = side(v1), side(v2)
    stop_grad = grads_of(regression_loss(z1, z2.detach()) + regression_loss(z2, z1.detach()))
    for g, expected in zip(grads, both_sides, strict=True):
        torch.testing.assert_close(g, expected)
    assert any(not torch.allclose(g, s) for g, s in zip(grads, stop_grad, strict=True))


def _config(name: str) -> Config:
    return Config(model=ModelConfig(encoder="small_cnn", proj_hidden_dim=8, proj_dim=4,
                                    pred_hidden_dim=8),
                  method=MethodConfig(name=name))


@pytest.mark.parametrize(("name", "kind"),
                         [("byol", BYOL), ("simclr", SimCLR), ("random_init", RandomInit)])
def test_build_method_dispatch(name, kind):
    method = build_method(_config(name))
    assert isinstance(method, kind) and isinstance(method, Method)
    method.encoder.eval()
    with torch.no_grad():
        assert method.encoder(torch.randn(2, 3, 16, 16)).shape == (2, 128)
    if name == "random_init":
        assert method.after_step(0, 10) == {}
        with pytest.raises(RuntimeError, match="never trained|no training loss"):
            method(*_views())
    else:
        method.train()
        assert torch.isfinite(method(*_views(2))["loss"])


def test_build_method_unknown():
    with pytest.raises(ValueError, match="unknown method") as error:
        build_method(_config("moco"))
    assert isinstance(error.value, ConfigError) and error.value.field == "method.name"
    assert "byol, random_init, simclr" in str(error.value)  # what is allowed


def test_every_method_entry_has_a_registered_class():
    """Config validation reads `core.methods`' entries: each has a class to build, no class
    lacks an entry."""
    assert method_names() == tuple(sorted(methods.method_names()))


def test_register_refuses_a_name_without_an_entry():
    with pytest.raises(ValueError, match="no entry in byol_ray.core.methods"):
        register("entryless")(RandomInit)


def test_register_refuses_a_name_twice():
    with pytest.raises(ValueError, match="registered twice"):
        register("byol")(RandomInit)
