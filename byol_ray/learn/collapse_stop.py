"""When to end a pretraining run whose embedding has collapsed, pure.

The collapse monitor (`metrics.embedding_std`, logged as `eval/embedding_std`) reads the std of
the L2-normalised online projections times sqrt(d): about 1 spread over the sphere, 0 when every
image maps to one point [SimSiam §4.1]. A collapsed run stays collapsed: a constant embedding
minimises the loss of the collapsing BYOL variants [P §3.2, Table 5b], and on cpu-mini the
(predictor, no target, beta = 0) cell read <= 0.004 from epoch 8 to its end (epoch 20;
`benchmarks/results/collapse_sequences_cpu-mini_2026-12-07.json`). So once the monitor has
read a collapse
(`metrics.is_collapsed`: below the threshold, or NaN) at `patience` consecutive checks, the
remaining epochs buy nothing and the run can end; a single low reading (a transient dip) does
not end it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from byol_ray.learn.metrics import is_collapsed


@dataclass
class CollapseStop:
    """The stopping rule, fed one monitor reading at a time."""

    threshold: float
    patience: int
    streak: int = 0  # consecutive collapsed readings up to the last one
    stopped_at: int | None = None  # the epoch whose reading ended the run

    def __post_init__(self):
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def observe(self, epoch: int, embedding_std: float) -> bool:
        """Record the reading after `epoch`; True once `patience` consecutive readings saw a
        collapse (and for every reading after that)."""
        if self.stopped_at is not None:
            return True
        self.streak = self.streak + 1 if is_collapsed(embedding_std, self.threshold) else 0
        if self.streak >= self.patience:
            self.stopped_at = epoch
        return self.stopped_at is not None


def stop_epoch(readings: Iterable[tuple[int, float]], threshold: float,
               patience: int) -> int | None:
    """The epoch at which a run with these (epoch, embedding_std) readings stops; None if it
    runs to the end."""
    rule = CollapseStop(threshold, patience)
    for epoch, std in readings:
        if rule.observe(epoch, std):
            return rule.stopped_at
    return None


def stopped_text(epoch: int) -> str:
    """How a stopped run is marked (tag, status line, table cell)."""
    return f"collapsed at epoch {epoch}, stopped"
