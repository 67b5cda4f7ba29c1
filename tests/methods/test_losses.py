"""The losses equal the paper's formulas on hand-made and random tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from byol_ray.methods.losses import contrastive_regression_loss, nt_xent, regression_loss


def _explicit_regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """||p/||p|| - z/||z|||^2 averaged over the batch, written out [P eq. 2]."""
    pn = p / p.norm(dim=1, keepdim=True)
    zn = z / z.norm(dim=1, keepdim=True)
    return ((pn - zn) ** 2).sum(dim=1).mean()


@pytest.mark.parametrize(
    ("p", "z", "expected"),
    [
        ([[1.0, 0.0]], [[0.0, 3.0]], 2.0),  # orthogonal
        ([[2.0, 1.0]], [[4.0, 2.0]], 0.0),  # identical direction, any scale
        ([[1.0, -1.0]], [[-5.0, 5.0]], 4.0),  # opposite
        ([[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 7.0]], 1.0),  # mean of 2 and 0
    ],
)
def test_regression_loss_hand_made(p, z, expected):
    loss = regression_loss(torch.tensor(p), torch.tensor(z))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_regression_loss_matches_normalised_squared_distance():
    gen = torch.Generator().manual_seed(0)
    p, z = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    torch.testing.assert_close(regression_loss(p, z), _explicit_regression(p, z))


def test_beta_zero_is_exactly_regression():
    gen = torch.Generator().manual_seed(1)
    p, z = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    assert torch.equal(contrastive_regression_loss(p, z, 0.1, 0.0), regression_loss(p, z))


def test_contrastive_regression_matches_loop():
    gen = torch.Generator().manual_seed(2)
    p, z = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    temperature, beta = 0.3, 0.7
    terms = []
    for i in range(5):
        sims = [F.cosine_similarity(p[i], z[j], dim=0) for j in range(5)]
        log_denominator = math.log(sum(math.exp(s.item() / temperature) for s in sims))
        terms.append(2 - 2 * sims[i].item() + beta * 2 * temperature * log_denominator)
    loss = contrastive_regression_loss(p, z, temperature, beta)
    assert loss.item() == pytest.approx(sum(terms) / 5, rel=1e-5)


def _nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        sims = {j: F.cosine_similarity(z[i], z[j], dim=0).item() / temperature
                for j in range(n2) if j != i}
        denominator = sum(math.exp(s) for s in sims.values())
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / n2


def test_nt_xent_matches_loop():
    gen = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    loss = nt_xent(z1, z2, 0.5)
    assert loss.item() == pytest.approx(_nt_xent_loop(z1, z2, 0.5), rel=1e-5)


def test_nt_xent_gradient_is_finite_and_alignment_lowers_loss():
    gen = torch.Generator().manual_seed(4)
    z1 = torch.randn(4, 6, generator=gen, requires_grad=True)
    z2 = torch.randn(4, 6, generator=gen)
    loss = nt_xent(z1, z2, 0.1)
    loss.backward()
    assert torch.isfinite(z1.grad).all()
    assert nt_xent(z2, z2, 0.1) < loss


def test_losses_are_float32_under_bfloat16_autocast():
    gen = torch.Generator().manual_seed(5)
    p, z = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    exact = [regression_loss(p, z), contrastive_regression_loss(p, z, 0.1, 1.0),
             nt_xent(p, z, 0.1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = [regression_loss(p, z), contrastive_regression_loss(p, z, 0.1, 1.0),
                 nt_xent(p, z, 0.1)]
    for m, e in zip(mixed, exact, strict=True):
        assert m.dtype == torch.float32
        torch.testing.assert_close(m, e)
