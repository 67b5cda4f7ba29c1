"""Synthetic sweep results, as DataFrames and as a real MLflow sqlite store (no Ray).

`TRIALS` is a small cpu-mini-like set of sweeps whose shape agrees with the paper, with the
awkward cases every table must show: failed, running and re-run seeds, collapsed cells, a
SimCLR row, a row the paper lacks (tau 0.996) and a second preset that filters must drop.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

PRESET = "cpu-mini"


def trial(grid: str, method: str, ablation: str, value: str, seed: int, linear: float | None,
          status: str = "FINISHED", collapsed: bool = False, preset: str = PRESET,
          reason: str | None = None, started: int = 0) -> dict[str, Any]:
    """One trial run: its tags, a few params and the final metrics (None = never logged)."""
    metrics = {}
    if linear is not None:
        metrics = {"eval/linear_top1": linear, "eval/knn_top1": linear - 1.0,
                   "eval/few_label_knn_top1": linear - 2.0,
                   "eval/collapsed": 1.0 if collapsed else 0.0,
                   "eval/embedding_std": 0.001 if collapsed else 0.9}
        if method != "random_init":
            metrics |= {"baseline/linear_top1": 70.0, "baseline/knn_top1": 69.0,
                        "baseline/few_label_knn_top1": 50.0}
    tags = {"role": "trial", "sweep": f"{grid}-{preset}", "grid": grid, "preset": preset,
            "trial": f"{method}-{ablation}={value}-s{seed}", "method": method,
            "seed": str(seed), "ablation": ablation, "ablation_value": value}
    if reason:
        tags["failure_reason"] = reason
    params = {"data.dataset": "digits", "eval.knn_k": "[20, 200]",
              "eval.few_label_per_class": "5", "method.name": method,
              "train.epochs": "40"}
    return {"tags": tags, "params": params, "metrics": metrics, "status": status,
            "started": started}


def seeds(grid: str, method: str, ablation: str, value: str, top1: float,
          **kwargs: Any) -> list[dict[str, Any]]:
    """Two finished seeds of one cell, top1 ∓ 0.25 (mean top1, std 0.35): enough seeds for
    the verdicts to tell its differences from noise."""
    return [trial(grid, method, ablation, value, seed, top1 + delta, **kwargs)
            for seed, delta in ((0, -0.25), (1, 0.25))]


def _trials() -> list[dict[str, Any]]:
    t, s = trial, seeds
    ema, tn, bs, aug = "ema_decay", "target_network", "batch_size", "augmentations"
    return [
        t(ema, "byol", "tau_base", "1", 0, 60.0), t(ema, "byol", "tau_base", "1", 1, 62.0),
        # seed 0 of tau 0.99 failed once, then its retry finished: it counts once, as finished
        t(ema, "byol", "tau_base", "0.99", 0, None, "FAILED", reason="OOM", started=1),
        t(ema, "byol", "tau_base", "0.99", 0, 90.0, started=2),
        t(ema, "byol", "tau_base", "0.99", 1, 92.0), t(ema, "byol", "tau_base", "0.99", 2, 91.0),
        t(ema, "byol", "tau_base", "0.9", 0, 85.0),
        t(ema, "byol", "tau_base", "0.9", 1, None, "FAILED", reason="FloatingPointError: nan"),
        t(ema, "byol", "tau_base", "0.999", 0, None, "RUNNING"),
        t(ema, "byol", "tau_base", "0.996", 0, 89.0),
        t(ema, "byol", "tau_base", "0", 0, 12.0, collapsed=True),
        t(ema, "byol", "tau_base", "0", 1, 11.0, collapsed=True),
        t(ema, "random_init", "random_init", "random_init", 0, 70.0),
        *s(tn, "byol", "target_network", "pred=yes,target=yes,beta=0", 91.0),
        t(tn, "byol", "target_network", "pred=yes,target=yes,beta=1", 0, None, "FAILED",
          reason="RuntimeError: boom"),
        t(tn, "byol", "target_network", "pred=no,target=yes,beta=0", 0, 10.0, collapsed=True),
        t(tn, "byol", "target_network", "pred=yes,target=no,beta=0", 0, 11.0, collapsed=True),
        t(tn, "byol", "target_network", "pred=no,target=no,beta=1", 0, 86.0),
        *s(tn, "simclr", "target_network", "simclr", 85.0),
        # as in the paper: SimCLR loses more at 128, BYOL more at 64
        *s(bs, "byol", "batch_size", "256", 91.0), *s(bs, "simclr", "batch_size", "256", 86.0),
        *s(bs, "byol", "batch_size", "128", 90.5), *s(bs, "simclr", "batch_size", "128", 84.0),
        *s(bs, "byol", "batch_size", "64", 78.0), *s(bs, "simclr", "batch_size", "64", 80.0),
        *s(aug, "byol", "recipe", "baseline", 91.0),
        *s(aug, "byol", "recipe", "crop_only", 80.0),
        *s(aug, "simclr", "recipe", "baseline", 86.0),
        *s(aug, "simclr", "recipe", "crop_only", 65.0),
        *s(aug, "byol", "strength", "0.5", 90.0), *s(aug, "simclr", "strength", "0.5", 83.0),
        *s(aug, "byol", "strength", "0", 88.0), *s(aug, "simclr", "strength", "0", 78.0),
        t(ema, "byol", "tau_base", "0.99", 0, 50.0, preset="cifar10"),
    ]


TRIALS = _trials()


def raw_frame(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """What `mlflow.search_runs` returns for these trials (tags.*, params.*, metrics.*)."""
    rows = []
    for i, tr in enumerate(trials):
        row = {"run_id": f"run{i}", "experiment": f"{tr['tags']['grid']}/{tr['tags']['preset']}",
               "status": tr["status"],
               "start_time": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(tr["started"],
                                                                                 "s"),
               "end_time": pd.NaT}
        row |= {f"tags.{k}": v for k, v in tr["tags"].items()}
        row |= {f"params.{k}": v for k, v in tr["params"].items()}
        row |= {f"metrics.{k}": v for k, v in tr["metrics"].items()}
        rows.append(row)
    return pd.DataFrame(rows)


def write_store(uri: str, trials: list[dict[str, Any]]) -> None:
    """The sweeps' MLflow layout: per (grid, preset) an experiment with a parent run and a
    child run per trial (tags, params, latest metrics, terminal status)."""
    client = MlflowClient(uri)
    parents: dict[str, str] = {}
    for tr in trials:
        tags = tr["tags"]
        name = f"{tags['grid']}/{tags['preset']}"
        if name not in parents:
            experiment = client.create_experiment(name)
            parent = client.create_run(experiment, run_name=tags["sweep"], tags={
                "role": "sweep", "sweep": tags["sweep"], "grid": tags["grid"],
                "preset": tags["preset"]})
            client.set_terminated(parent.info.run_id, "FINISHED")
            parents[name] = parent.info.run_id
        parent_id = parents[name]
        experiment_id = client.get_run(parent_id).info.experiment_id
        now = int(time.time() * 1000) + 1000 * tr["started"]
        run = client.create_run(experiment_id, start_time=now, run_name=tags["trial"],
                                tags={**tags, "mlflow.parentRunId": parent_id})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 40) for k, v in tr["metrics"].items()],
            params=[Param(k, v) for k, v in tr["params"].items()],
        )
        if tr["status"] in ("FINISHED", "FAILED"):
            client.set_terminated(run.info.run_id, RunStatus.to_string(
                getattr(RunStatus, tr["status"])))
