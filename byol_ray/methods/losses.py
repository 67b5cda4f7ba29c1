"""Objectives as pure functions on tensors: BYOL's regression, its contrastive
generalisation (Table 5b) and SimCLR's NT-Xent.

Inputs are cast to float32 (and autocast is off for the similarity matmul) so the losses
stay accurate under bfloat16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _cosine_matrix(p: Tensor, z: Tensor) -> Tensor:
    """S_ij = cos(p_i, z_j) for all pairs, shape (B, B), in float32 even under autocast."""
    with torch.autocast(p.device.type, enabled=False):
        return F.normalize(p.float(), dim=-1) @ F.normalize(z.float(), dim=-1).T


def regression_loss(p: Tensor, z: Tensor) -> Tensor:
    """Mean over the batch of ||p/||p|| - z/||z||||^2 = 2 - 2 cos(p, z) [P eq. 2].

    BYOL's loss between the online prediction p and the target projection z; it lies in
    [0, 4] and is minimised. The caller detaches z when it comes from a target network.
    """
    cos = F.cosine_similarity(p.float(), z.float(), dim=-1)
    return (2 - 2 * cos).mean()


def contrastive_regression_loss(p: Tensor, z: Tensor, temperature: float, beta: float) -> Tensor:
    """BYOL's regression plus a beta-weighted contrastive term [P Table 5b, App. "SimCLR"].

    With S_ij = cos(p_i, z_j) over a batch of B pairs, the minimised loss is

        mean_i [2 - 2 S_ii] + beta * 2 * temperature * mean_i logsumexp_j(S_ij / temperature),

    where j runs over every z_j of the batch (the positive z_i and the B - 1 negatives).
    It is the negative of the paper's InfoNCE_{alpha,beta} up to the constant 2, with
    alpha = temperature; beta = 0 gives exactly `regression_loss`, beta = 1 a SimCLR-like
    objective (negatives only across views here, not within a view).
    """
    if beta == 0:
        return regression_loss(p, z)
    sim = _cosine_matrix(p, z)
    regression = (2 - 2 * sim.diagonal()).mean()
    contrast = torch.logsumexp(sim / temperature, dim=1).mean()
    return regression + beta * 2 * temperature * contrast


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent loss over the 2N embeddings of N pairs of views (minimised).

    Each of the 2N samples is classified against the other 2N - 1 by cosine similarity /
    temperature: its other view is the positive, the 2N - 2 others are negatives and the
    self-similarity is masked out; the cross-entropy is averaged over all 2N samples.
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = _cosine_matrix(z, z) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)
