"""SimCLR: NT-Xent on the projections of both views, gradients through both."""

import torch
from torch import nn

from byol_ray.core.config import MethodConfig, ModelConfig
from byol_ray.learn.methods import SimCLR
from byol_ray.learn.methods.losses import nt_xent


def _simclr(temperature: float = 0.2) -> SimCLR:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = ModelConfig(proj_hidden_dim=8, proj_dim=4)
    return SimCLR(encoder, 4, model, MethodConfig(name="simclr", temperature=temperature))


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)


def test_loss_is_nt_xent_of_projections():
    model = _simclr(temperature=0.3)
    v1, v2 = _views()
    out = model(v1, v2)
    z1, z2 = (model.projector(model.encoder(v)) for v in (v1, v2))
    torch.testing.assert_close(out["loss"], nt_xent(z1, z2, 0.3))
    assert set(out) == {"loss"}


def test_gradients_reach_encoder_and_projector_and_no_ema():
    model = _simclr()
    model(*_views())["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.after_step(0, 10) == {}


def test_symmetric_in_view_order():
    model = _simclr()
    v1, v2 = _views()
    torch.testing.assert_close(model(v1, v2)["loss"], model(v2, v1)["loss"])
