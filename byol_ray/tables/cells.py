"""Table cells: trial runs averaged over seeds, on canonical axis values, naming their protocol.

A cell is one (ablation, ablation_value, method): the mean ± std of the chosen top-1 over its
finished seeds, how many seeds that is, how many trials failed or are still running, how many
finished seeds collapsed, and which protocol measured it ("top-1" alone hides whether it is a
kNN monitor or a linear probe, and on which split; the paper's numbers are a linear probe on
ImageNet val). A seed that was re-run (a retried trial, a second sweep) counts once: its
best-status, latest run. Axis tags are text written by different sweeps ("1" or "1.0",
SimCLR's own "simclr"); reading the runs (`report.runs.normalise_runs`) maps each to its grid's
spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from byol_ray.core.methods import untrained_names
from byol_ray.tables.reference import PAPER_PROTOCOL


def numeric(value: str) -> float:
    """An axis value as a number for sorting and plotting (NaN if it is not one)."""
    try:
        return float(value)
    except ValueError:
        return float("nan")


METRICS = ("linear", "knn", "few_label")
METRIC_COLUMN = {"linear": "linear_top1", "knn": "knn_top1", "few_label": "few_label_knn_top1"}
# The random-init run logs eval/*; any trained run also logs its untrained encoder here.
BASELINE_COLUMN = {m: f"baseline_{c}" for m, c in METRIC_COLUMN.items()}
# The paper's own protocols (`byol-ray eval`, a sweep's `--eval`) where a trial ran them:
# Table 1 (linear evaluation) and Table 2 (semi-supervised fine-tuning on 1% / 10%).
PAPER_LINEAR = "paper_linear"
PROTOCOL_COLUMN = {PAPER_LINEAR: "paper_linear_top1", "finetune_1pct": "finetune_1pct_top1",
                   "finetune_10pct": "finetune_10pct_top1"}
METRIC_COLUMN |= PROTOCOL_COLUMN
PAPER_LINEAR_PROBE = "linear evaluation, the paper's protocol [P App. C.1]"
# The tables' metric when none is asked for: where a preset's own choice was validated
# (docs/experiments/miniature.md, "Choosing cpu-mini's setting"), that one; else `linear`: the
# paper's linear evaluation, which the GPU presets' sweeps run on every trial (`--eval`,
# `jobs.sweep.plan.default_evals`).
DEFAULT_METRIC = {"cpu-mini": "few_label"}
# Presets whose tables are a miniature of the paper's: their metric, named in every caption,
# stands in for the paper's protocol and the verdicts compare its shape with the paper's. On
# every other preset a cell is compared with the paper only where the paper's protocol
# measured it (every seed); a cell measured otherwise (the offline probe a trial falls back on
# without `--eval linear`, a kNN monitor) carries `NOT_PAPER` and no verdict uses it.
MINIATURE_PRESETS = ("cpu-mini",)
NOT_PAPER = "not the paper's protocol"


def default_metric(preset: str | None) -> str:
    """The metric the tables use for `preset` unless told otherwise."""
    return DEFAULT_METRIC.get(preset or "", "linear")


def has_protocol(runs: pd.DataFrame, metric: str) -> bool:
    """Whether any trial ran the paper's protocol behind `metric` (Table 1 / 2 columns)."""
    column = PROTOCOL_COLUMN[metric]
    return column in runs and bool(runs[column].notna().any())


def resolve_metric(metric: str | None, runs: pd.DataFrame) -> str:
    """`metric`, or the default of the runs' preset (they hold one preset: `select_runs`)."""
    if metric is not None:
        return metric
    presets = runs["preset"].dropna().unique()
    return default_metric(presets[0] if len(presets) == 1 else None)


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
    text = "" if knn_k is None or pd.isna(knn_k) else str(knn_k)
    first = text.strip("[]() ").split(",")[0].strip()
    return first if first.isdigit() else None


def split_name(dataset: object) -> str:
    """The held-out split evaluation scores on, by dataset (ImageFolder: val, others: test)."""
    name = dataset if isinstance(dataset, str) and dataset else "unknown dataset"
    return f"{name} {'val' if name == 'imagefolder' else 'test'} split"


def protocol_for(metric: str, dataset: object = None, knn_k: object = None,
                 per_class: object = None, paper: bool = False) -> Protocol:
    """The protocol of `eval/<metric>_top1` for a run with these params; `paper`: the linear
    number is the paper's linear evaluation (`eval_linear/test_top1`), not the offline probe."""
    if metric not in METRIC_COLUMN:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRIC_COLUMN)}")
    split = split_name(dataset)
    if metric == PAPER_LINEAR or (metric == "linear" and paper):
        return Protocol(PAPER_LINEAR_PROBE, "offline", split)
    if metric in PROTOCOL_COLUMN:
        share = metric.removeprefix("finetune_").removesuffix("pct")
        return Protocol(f"fine-tuned on {share}% of the labels, the paper's protocol "
                        "[P App. C.2]", "offline", split)
    if metric == "linear":
        return Protocol("linear probe", "offline", split)
    k = _first_k(knn_k)
    probe = f"kNN (k={k})" if k else "kNN"
    if metric == "few_label":
        labels = _first_k(per_class)
        probe = f"few-label {probe}, {labels or '?'} labels per class"
    return Protocol(probe, "online", split)


def is_paper_protocol(metric: str, paper_linear: bool = False) -> bool:
    """Whether `metric` measured the paper's protocol: its linear evaluation or fine-tuning
    (`paper_linear`: the `linear` metric took the trial's linear evaluation, not the probe)."""
    return metric in PROTOCOL_COLUMN or (metric == "linear" and paper_linear)


def describe(metric: str) -> str:
    """The full sentence for a caption: what our number is, measured how and where."""
    if metric == "linear":
        ours = ("the paper's linear evaluation [P App. C.1] where a trial ran it (byol-ray "
                "eval linear, a sweep's --eval linear, the GPU presets' default: augmented "
                "training images, lr chosen on a held-out part of train), else a linear probe "
                "on frozen centre-view features fitted after pretraining; each cell names "
                f"which, and outside the cpu-mini miniature a probe cell says '{NOT_PAPER}' "
                "and no verdict compares it with the paper; scored on the held-out test "
                "split")
    elif metric == PAPER_LINEAR:
        ours = ("the paper's linear evaluation [P App. C.1] (byol-ray eval linear: frozen "
                "encoder, augmented training images, lr chosen on a held-out part of train), "
                "scored on the held-out test split")
    elif metric in PROTOCOL_COLUMN:
        ours = ("the paper's semi-supervised protocol [P App. C.2] (byol-ray eval finetune: "
                "the whole network fine-tuned on a class-balanced seeded share of the train "
                "labels, lr chosen on a held-out part of that share), scored on the held-out "
                "test split")
    elif metric == "knn":
        ours = ("kNN on frozen features (cosine, temperature-weighted votes), online monitor "
                "(its last evaluation, at the end of pretraining), memory bank = train split, "
                "scored on the held-out test split")
    else:
        ours = ("few-label kNN on frozen features (as the kNN monitor, but its memory bank "
                "holds only a few labelled train images per class, fixed class-balanced seeded "
                "draws, top-1 averaged over the draws; the paper's semi-supervised setting in "
                "miniature), at the end of pretraining, scored on the held-out test split")
    return (f"Ours: top-1 (%), {ours}; mean ± std over seeds (n = seeds averaged). "
            f"Paper: {PAPER_PROTOCOL}, ResNet-50, 300 epochs.")


CELL_KEYS = ("ablation", "ablation_value", "method")
CELL_COLUMNS = (*CELL_KEYS, "mean", "std", "n_seeds", "n_failed", "n_pending", "n_no_metric",
                "n_collapsed", "n_runs", "seeds", "status", "protocol", "comparable",
                "failure_reasons", "stopped_epochs")
_PENDING = ("SCHEDULED", "RUNNING")
_FAILED = ("FAILED", "KILLED")
# Which run stands for a seed that ran more than once: lower is preferred.
_RANK = {"ok": 0, "pending": 1, "no_metric": 2, "failed": 3}


def run_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Each run's top-1 under `metric`; a random-init run without eval/* falls back to its
    baseline/* (both measure the untrained encoder)."""
    values = _column(runs, METRIC_COLUMN[metric])
    if metric == "linear":  # the paper's protocol where the trial ran it
        values = _column(runs, PROTOCOL_COLUMN[PAPER_LINEAR]).fillna(values)
    fallback = _column(runs, BASELINE_COLUMN.get(metric, ""))
    is_random = runs["method"].isin(untrained_names())
    return values.where(~(is_random & values.isna()), fallback)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column of the runs; all NaN when the frame lacks it (never logged)."""
    if name in runs:
        return runs[name].astype(float)
    return pd.Series(float("nan"), index=runs.index)


def run_states(runs: pd.DataFrame, values: pd.Series) -> pd.Series:
    """ok (finished, has the metric), no_metric (finished without it), pending, or failed."""
    status = runs["status"].fillna("")
    state = pd.Series("failed", index=runs.index, dtype=object)
    state[status.eq("FINISHED") & values.notna()] = "ok"
    state[status.eq("FINISHED") & values.isna()] = "no_metric"
    state[status.isin(_PENDING)] = "pending"
    state[~status.isin(("FINISHED", *_PENDING, *_FAILED))] = "pending"  # unknown: not done
    return state


def dedupe_seeds(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One run per (cell, seed): the best state (ok > pending > no metric > failed), then the
    latest started. Runs without a seed tag are all kept."""
    frame = runs.copy()
    frame["value"] = run_values(frame, metric)
    frame["state"] = run_states(frame, frame["value"])
    frame["_rank"] = frame["state"].map(_RANK)
    frame["_seed"] = frame["seed"].astype(object).where(frame["seed"].notna(), frame["run_id"])
    frame = frame.sort_values(["_rank", "start_time"], ascending=[True, False],
                              na_position="last", kind="stable")
    frame = frame.drop_duplicates([*CELL_KEYS, "_seed"], keep="first")
    return frame.drop(columns=["_rank", "_seed"]).sort_index()


def _cell(group: pd.DataFrame, metric: str) -> dict[str, Any]:
    ok = group[group["state"] == "ok"]
    counted = ok if len(ok) else group
    protocols, comparable = {}, True
    for row in counted.itertuples():
        paper = pd.notna(getattr(row, "paper_linear_top1", None))
        protocols[protocol_for(metric, row.dataset, row.knn_k, row.few_label_per_class,
                               paper=paper).short] = None
        comparable &= bool(is_paper_protocol(metric, paper)
                           or getattr(row, "preset", None) in MINIATURE_PRESETS)
    n_failed = int((group["state"] == "failed").sum())
    n_pending = int((group["state"] == "pending").sum())
    if len(ok):
        status = "ok"
    elif n_failed:
        status = "failed"
    elif n_pending:
        status = "pending"
    else:
        status = "missing"
    reasons = group.loc[group["state"] == "failed", "failure_reason"].dropna().unique()
    seeds = sorted(int(s) for s in ok["seed"].dropna())
    return {
        "mean": float(ok["value"].mean()) if len(ok) else float("nan"),
        "std": float(ok["value"].std(ddof=1)) if len(ok) > 1 else float("nan"),
        "n_seeds": len(ok),
        "n_failed": n_failed,
        "n_pending": n_pending,
        "n_no_metric": int((group["state"] == "no_metric").sum()),
        "n_collapsed": int(ok["collapsed"].fillna(0.0).ge(0.5).sum()),
        "n_runs": len(group),
        "seeds": ",".join(map(str, seeds)),
        "status": status,
        "protocol": " / ".join(protocols) + ("" if comparable else f" [{NOT_PAPER}]"),
        "comparable": comparable,  # may a verdict compare it with the paper (`Estimate.of`)
        "failure_reasons": "; ".join(str(r) for r in reasons),
        # trials the collapse monitor ended early (`learn.collapse_stop`): their last epochs
        "stopped_epochs": ",".join(str(int(e)) for e in ok.get(
            "stopped_epoch", pd.Series(dtype=float)).dropna()),
    }


def aggregate(runs: pd.DataFrame, metric: str = "linear") -> pd.DataFrame:
    """One row per cell (ablation, ablation_value, method) with the columns of `CELL_COLUMNS`
    (axis values as the runs spell them: canonical after `normalise_runs`); `mean` is NaN
    (never 0) when no seed finished with the metric."""
    if metric not in METRIC_COLUMN:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRIC_COLUMN)}")
    frame = runs.copy()
    frame[list(CELL_KEYS)] = frame[list(CELL_KEYS)].astype(object).fillna("")
    frame = dedupe_seeds(frame, metric)
    records = [
        {**dict(zip(CELL_KEYS, key, strict=True)), **_cell(group, metric)}
        for key, group in frame.groupby(list(CELL_KEYS), sort=True, dropna=False)
    ]
    return pd.DataFrame(records, columns=list(CELL_COLUMNS))


def format_cell(cell: Mapping[str, Any] | None, digits: int = 1) -> str:
    """A cell as a table shows it: '72.5 ± 0.3 (n=3)', with failures, unfinished trials and
    collapse spelled out; 'missing' when no trial exists, never 0."""
    if cell is None or cell["n_runs"] == 0:
        return "missing"
    extras = []
    if cell["n_failed"]:
        extras.append(f"{cell['n_failed']} failed")
    if cell["n_pending"]:
        extras.append(f"{cell['n_pending']} not finished")
    if cell["n_no_metric"]:
        extras.append(f"{cell['n_no_metric']} without this metric")
    status = cell["status"]
    if status == "failed":
        return f"failed ({cell['n_failed']} of {cell['n_runs']} trials)" + (
            f"; {cell['n_pending']} not finished" if cell["n_pending"] else "")
    if status == "pending":
        return f"not finished ({cell['n_pending']} running or scheduled)"
    if status == "missing":
        return "missing" + (f" ({', '.join(extras)})" if extras else "")
    n, collapsed = cell["n_seeds"], cell["n_collapsed"]
    text = f"{cell['mean']:.{digits}f}"
    if n > 1:
        text += f" ± {cell['std']:.{digits}f}"
    text += f" (n={n}{''.join('; ' + e for e in extras)})"
    if not cell.get("comparable", True):
        text += f" [{NOT_PAPER}]"
    if collapsed:
        what = "collapsed" if collapsed == n else f"collapsed in {collapsed}/{n};"
        if stopped := cell.get("stopped_epochs"):  # as learn.collapse_stop.stopped_text
            epochs = stopped.split(",")
            what += f" at epoch{'s' * (len(epochs) > 1)} {', '.join(epochs)}, stopped"
        text += f" [{what.rstrip(';')}]"
    return text


def find_cell(cells: pd.DataFrame, ablation: str, value: str,
              method: str | None = None) -> dict[str, Any] | None:
    """The cell of (ablation, value[, method]) as a dict, or None when no trial ran it."""
    mask = cells["ablation"].eq(ablation) & cells["ablation_value"].eq(value)
    if method is not None:
        mask &= cells["method"].eq(method)
    found = cells[mask]
    return found.iloc[0].to_dict() if len(found) else None
