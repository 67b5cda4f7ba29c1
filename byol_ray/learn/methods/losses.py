"""Objectives as pure functions on tensors: BYOL's regression, its contrastive
generalisation InfoNCE_{alpha,beta} (Table 5b) and SimCLR's NT-Xent.

The contrastive terms run over the global batch: each worker scores its own rows against the
rows of every worker (`byol_ray.learn.methods.distributed.gather`, with gradients), so N workers
compute the loss and the gradients of one process holding the whole batch. With `group_size`
B > 0 (Fig. 3a's batch inside a larger optimiser batch, `data.group_size`) an image's negatives
come from its own group of B images only, and the loss is the mean over the groups: the mean of
N sequential batches' losses. Inputs are cast to float32 (and autocast is off for the
similarity matmul) so the losses stay accurate under bfloat16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from byol_ray.learn.methods.distributed import gather, rank_and_world


def _cosine_matrix(p: Tensor, z: Tensor) -> Tensor:
    """S_ij = cos(p_i, z_j) for all pairs (of each group: batched), float32 even under autocast."""
    with torch.autocast(p.device.type, enabled=False):
        return F.normalize(p.float(), dim=-1) @ F.normalize(z.float(), dim=-1).mT


def _group_columns(rows: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """The columns the local rows are scored against, (groups, B, d), and each row's column.

    group_size 0 is the global batch. Below the worker's n rows: its n / B groups, nothing
    gathered. Else the B / n workers of its group, sliced from the gathered batch (the slice
    gives other groups' rows no gradient).
    """
    n = rows.shape[0]
    if 0 < group_size < n:
        own = torch.arange(group_size, device=rows.device).repeat(n // group_size)
        return rows.unflatten(0, (n // group_size, group_size)), own
    rank, world = rank_and_world()
    size = group_size or n * world
    first = rank * n - rank * n % size  # this worker's group's first row in the global batch
    own = torch.arange(rank * n - first, rank * n - first + n, device=rows.device)
    return gather(rows)[first:first + size][None], own


def _similarities(anchors: Tensor, same_view: Tensor, other_view: Tensor,
                  own: Tensor) -> tuple[Tensor, Tensor]:
    """Each local anchor's cosines with [same view of its group; other view of its group].

    `same_view` and `other_view` are `_group_columns` (groups, B, d); the anchor's own image
    in the same view (column `own`) is set to -inf (j != i). Returns the (n, 2B) matrix and,
    per anchor, the column of its positive: the other view of its own image.
    """
    groups, size = same_view.shape[:2]
    sim = _cosine_matrix(anchors.unflatten(0, (groups, -1)), torch.cat([same_view, other_view], 1))
    sim = sim.flatten(0, 1)
    itself = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, own[:, None], True)
    return sim.masked_fill(itself, float("-inf")), own + size


def regression_loss(p: Tensor, z: Tensor) -> Tensor:
    """Mean over the batch of ||p/||p|| - z/||z||||^2 = 2 - 2 cos(p, z) [P eq. 2].

    BYOL's loss between the online prediction p and the target projection z; it lies in
    [0, 4] and is minimised. Per sample, so it needs no other worker's rows. The caller
    detaches z when it comes from a target network.
    """
    cos = F.cosine_similarity(p.float(), z.float(), dim=-1)
    return (2 - 2 * cos).mean()


def _negative_info_nce(p: Tensor, same_view: Tensor, other_view: Tensor, own: Tensor,
                       temperature: float, beta: float) -> Tensor:
    """One direction of `byol_loss` for the local predictions p (columns already grouped)."""
    sim, positive = _similarities(p, same_view, other_view, own)
    s_ii = sim.gather(1, positive[:, None]).squeeze(1)
    log_partition = torch.logsumexp(sim / temperature, dim=1)
    return (2 - 2 * s_ii + beta * 2 * temperature * log_partition).mean()


def byol_loss(q1: Tensor, q2: Tensor, t1: Tensor, t2: Tensor, temperature: float,
              beta: float, group_size: int = 0) -> Tensor:
    """BYOL's symmetrised loss with Table 5b's contrastive term [P eq. 2, App. "SimCLR"].

    q_v = online predictions of view v, t_v = target projections of view v, over a global
    batch of B images (this worker holds n of them). With S(a, b) = cos(a, b) and
    alpha = temperature, the paper's objective for view 1 (maximised) is

        InfoNCE_{alpha,beta} = (2/B) sum_i S(q1_i, t2_i)
            - beta (2 alpha / B) sum_i ln( sum_{j != i} exp(S(q1_i, t1_j) / alpha)
                                         + sum_j exp(S(q1_i, t2_j) / alpha) ):

    the log-sum runs over the *same* view of the other images and the *other* view of all
    images, j over the global batch. This returns, minimised,
    4 - InfoNCE(q1, t2) - InfoNCE(q2, t1), exactly. beta = 0 is BYOL's regression
    `regression_loss(q1, t2) + regression_loss(q2, t1)` and gathers nothing (BYOL needs no
    negatives); beta = 1 with no predictor and no target network (q = t = the online
    projections z) is 4 + 4 alpha * nt_xent(z1, z2, alpha). Each worker averages over its
    own n rows (see `byol_ray.learn.methods.distributed` for why that is the global gradient).
    With `group_size` B, j runs over the anchor's group of B images only.
    """
    if beta == 0:
        return regression_loss(q1, t2) + regression_loss(q2, t1)
    (t1_all, own), (t2_all, _) = _group_columns(t1, group_size), _group_columns(t2, group_size)
    return (_negative_info_nce(q1, t1_all, t2_all, own, temperature, beta)
            + _negative_info_nce(q2, t2_all, t1_all, own, temperature, beta))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, group_size: int = 0) -> Tensor:
    """SimCLR's NT-Xent loss over the 2B embeddings of a global batch of B pairs (minimised).

    Each of the 2B samples is classified against the other 2B - 1 by cosine similarity /
    temperature: its other view is the positive, the other 2B - 2 (both views of every other
    image of the global batch, gathered from all workers) are negatives, and the
    self-similarity is masked out; the cross-entropy is averaged over the samples (each
    worker over its own 2n). With `group_size` B: over the sample's group of B pairs.
    """
    (z1_all, own), (z2_all, _) = _group_columns(z1, group_size), _group_columns(z2, group_size)
    sim1, positive = _similarities(z1, z1_all, z2_all, own)
    sim2, _ = _similarities(z2, z2_all, z1_all, own)
    logits = torch.cat([sim1, sim2]) / temperature
    return F.cross_entropy(logits, torch.cat([positive, positive]))
