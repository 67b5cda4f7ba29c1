"""The losses equal the paper's formulas on hand-made and random tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from byol_ray.learn.methods.losses import byol_loss, nt_xent, regression_loss


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


def _randn(*shape: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen) for _ in range(4)]


def test_beta_zero_is_exactly_regression():
    q1, q2, t1, t2 = _randn(6, 4, seed=1)
    assert torch.equal(byol_loss(q1, q2, t1, t2, 0.1, 0.0),
                       regression_loss(q1, t2) + regression_loss(q2, t1))


def _info_nce_loop(q, t_same, t_other, alpha, beta) -> float:
    """The paper's InfoNCE_{alpha,beta} for one view, written from its appendix formula."""
    b = len(q)

    def s(x, y):
        return F.cosine_similarity(x, y, dim=0).item()

    total = 0.0
    for i in range(b):
        same = sum(math.exp(s(q[i], t_same[j]) / alpha) for j in range(b) if j != i)
        other = sum(math.exp(s(q[i], t_other[j]) / alpha) for j in range(b))
        total += 2 / b * s(q[i], t_other[i]) - beta * 2 * alpha / b * math.log(same + other)
    return total


def test_byol_loss_is_the_papers_info_nce():
    q1, q2, t1, t2 = _randn(5, 3, seed=2)
    alpha, beta = 0.3, 0.7
    expected = 4 - _info_nce_loop(q1, t1, t2, alpha, beta) - _info_nce_loop(q2, t2, t1, alpha, beta)
    assert byol_loss(q1, q2, t1, t2, alpha, beta).item() == pytest.approx(expected, rel=1e-5)


def test_beta_one_without_predictor_or_target_is_nt_xent():
    z1, z2, _, _ = _randn(6, 5, seed=6)
    alpha = 0.1
    torch.testing.assert_close(byol_loss(z1, z2, z1, z2, alpha, 1.0),
                               4 + 4 * alpha * nt_xent(z1, z2, alpha))


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
    exact = [regression_loss(p, z), byol_loss(p, z, z, p, 0.1, 1.0), nt_xent(p, z, 0.1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = [regression_loss(p, z), byol_loss(p, z, z, p, 0.1, 1.0), nt_xent(p, z, 0.1)]
    for m, e in zip(mixed, exact, strict=True):
        assert m.dtype == torch.float32
        torch.testing.assert_close(m, e)
