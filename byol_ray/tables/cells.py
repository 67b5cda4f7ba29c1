"""Average trial runs over seeds into table cells, keeping failures, gaps and collapse visible.

A cell is one (ablation, ablation_value, method): the mean ± std of the chosen top-1 over its
finished seeds, how many seeds that is, how many trials failed or are still running, how many
finished seeds collapsed, and which protocol measured it. A seed that was re-run (a retried
trial, a second sweep) counts once: its best-status, latest run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from byol_ray.tables.axes import canonical_value
from byol_ray.tables.protocol import BASELINE_COLUMN, METRIC_COLUMN, protocol_for

CELL_KEYS = ("ablation", "ablation_value", "method")
CELL_COLUMNS = (*CELL_KEYS, "mean", "std", "n_seeds", "n_failed", "n_pending", "n_no_metric",
                "n_collapsed", "n_runs", "seeds", "status", "protocol", "failure_reasons")
RANDOM_INIT = "random_init"
_PENDING = ("SCHEDULED", "RUNNING")
_FAILED = ("FAILED", "KILLED")
# Which run stands for a seed that ran more than once: lower is preferred.
_RANK = {"ok": 0, "pending": 1, "no_metric": 2, "failed": 3}


def run_values(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Each run's top-1 under `metric`; a random-init run without eval/* falls back to its
    baseline/* (both measure the untrained encoder)."""
    values = runs[METRIC_COLUMN[metric]].astype(float)
    fallback = runs[BASELINE_COLUMN[metric]].astype(float)
    is_random = runs["method"].eq(RANDOM_INIT).fillna(False)
    return values.where(~(is_random & values.isna()), fallback)


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
    protocols = dict.fromkeys(
        protocol_for(metric, row.dataset, row.knn_k).short for row in counted.itertuples()
    )
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
        "protocol": " / ".join(protocols),
        "failure_reasons": "; ".join(str(r) for r in reasons),
    }


def aggregate(runs: pd.DataFrame, metric: str = "linear") -> pd.DataFrame:
    """One row per cell (ablation, ablation_value, method) with the columns of `CELL_COLUMNS`;
    axis values in their canonical spelling; `mean` is NaN (never 0) when no seed finished
    with the metric."""
    if metric not in METRIC_COLUMN:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRIC_COLUMN)}")
    frame = runs.copy()
    frame[list(CELL_KEYS)] = frame[list(CELL_KEYS)].astype(object).fillna("")
    frame["ablation_value"] = [canonical_value(a, v) for a, v in
                               zip(frame["ablation"], frame["ablation_value"], strict=True)]
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
    if collapsed:
        text += " [collapsed]" if collapsed == n else f" [collapsed in {collapsed}/{n}]"
    return text


def find_cell(cells: pd.DataFrame, ablation: str, value: str,
              method: str | None = None) -> dict[str, Any] | None:
    """The cell of (ablation, value[, method]) as a dict, or None when no trial ran it."""
    mask = cells["ablation"].eq(ablation) & cells["ablation_value"].eq(value)
    if method is not None:
        mask &= cells["method"].eq(method)
    found = cells[mask]
    return found.iloc[0].to_dict() if len(found) else None
