"""Which evaluation protocol a number comes from: probe, online or offline, and which split.

Every cell of every table carries one, because "top-1" alone hides whether it is a kNN monitor
or a linear probe, and on which split; the paper's numbers are a linear probe on ImageNet val.
"""

from __future__ import annotations

from dataclasses import dataclass

from byol_ray.tables.reference import PAPER_PROTOCOL

METRICS = ("linear", "knn")
METRIC_COLUMN = {"linear": "linear_top1", "knn": "knn_top1"}
# The random-init run logs eval/*; any trained run also logs its untrained encoder here.
BASELINE_COLUMN = {"linear": "baseline_linear_top1", "knn": "baseline_knn_top1"}


@dataclass(frozen=True)
class Protocol:
    """How one of our numbers was measured."""

    probe: str  # "linear probe" or "kNN (k=20)"
    timing: str  # "offline" (after pretraining) or "online" (monitored during it)
    split: str  # the scored split, e.g. "digits test split"

    @property
    def short(self) -> str:
        """The protocol in a few words, for a table cell: 'linear probe, offline, digits test'."""
        return f"{self.probe}, {self.timing}, {self.split}"


def _first_k(knn_k: object) -> str | None:
    text = "" if knn_k is None or knn_k != knn_k else str(knn_k)  # NaN != NaN
    first = text.strip("[]() ").split(",")[0].strip()
    return first if first.isdigit() else None


def split_name(dataset: object) -> str:
    """The held-out split evaluation scores on, by dataset (ImageFolder: val, others: test)."""
    name = dataset if isinstance(dataset, str) and dataset else "unknown dataset"
    return f"{name} {'val' if name == 'imagefolder' else 'test'} split"


def protocol_for(metric: str, dataset: object = None, knn_k: object = None) -> Protocol:
    """The protocol of `eval/<metric>_top1` for a run with these params."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRICS)}")
    split = split_name(dataset)
    if metric == "linear":
        return Protocol("linear probe", "offline", split)
    k = _first_k(knn_k)
    return Protocol(f"kNN (k={k})" if k else "kNN", "online", split)


def describe(metric: str) -> str:
    """The full sentence for a caption: what our number is, measured how and where."""
    if metric == "linear":
        ours = ("linear probe on frozen features, offline (fitted after pretraining on the "
                "train split), scored on the held-out test split")
    else:
        ours = ("kNN on frozen features (cosine, temperature-weighted votes), online monitor "
                "(its last evaluation, at the end of pretraining), memory bank = train split, "
                "scored on the held-out test split")
    return (f"Ours: top-1 (%), {ours}; mean ± std over seeds (n = seeds averaged). "
            f"Paper: {PAPER_PROTOCOL}, ResNet-50, 300 epochs.")
