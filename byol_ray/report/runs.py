"""Read the sweeps' trial runs from any MLflow tracking URI into one tidy DataFrame.

`search_trial_runs` is `mlflow.search_runs` (through `queries.search_runs_frame`; its columns
`tags.*`, `params.*`, `metrics.*`); `normalise_runs` turns that into one row per trial with
short column names (`method`, `ablation`, `ablation_value`, `seed`, `linear_top1`, ...),
whatever the store holds, each axis value in its grid's spelling (`experiments.canonical_value`);
`select_runs` filters by experiment, sweep and preset. The table builders read only the tidy
frame, so tests can build one by hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from byol_ray.core.config import ConfigError
from byol_ray.experiments import canonical_value
from byol_ray.runtime.tracking import queries, store

TABLES_URI_ENV = "BYOL_RAY_TRACKING_URI"
DEFAULT_URI = "sqlite:///mlflow.db"

TAGS = ("sweep", "grid", "preset", "trial", "method", "seed", "ablation", "ablation_value",
        "failure_reason")
PARAMS = {
    "data.dataset": "dataset",
    "data.eval_on": "eval_on",
    "eval.knn_k": "knn_k",
    "eval.few_label_per_class": "few_label_per_class",
    "train.epochs": "epochs",
    "data.batch_size": "batch_size",
    "method.tau_base": "tau_base",
    "method.predictor": "predictor",
    "method.target_network": "target_network",
    "method.beta": "beta",
    "augment.recipe": "recipe",
    "augment.strength": "strength",
}
METRICS = {
    "eval/linear_top1": "linear_top1",
    "eval/knn_top1": "knn_top1",
    "eval/knn_top1_k200": "knn_top1_k200",
    "eval/few_label_knn_top1": "few_label_knn_top1",
    "eval/embedding_std": "embedding_std",
    "eval/collapsed": "collapsed",
    "train/collapse_stopped_epoch": "stopped_epoch",  # ended early by the collapse monitor
    "baseline/linear_top1": "baseline_linear_top1",
    "baseline/knn_top1": "baseline_knn_top1",
    "baseline/few_label_knn_top1": "baseline_few_label_knn_top1",
    "train/loss": "train_loss",
    # The paper's protocols (`byol-ray eval`), run on a trial: see `with_protocol_metrics`.
    "eval_linear/test_top1": "paper_linear_top1",
    "eval_finetune_1pct/test_top1": "finetune_1pct_top1",
    "eval_finetune_10pct/test_top1": "finetune_10pct_top1",
}
COLUMNS = ("run_id", "experiment", "status", "start_time", "end_time", *TAGS,
           *PARAMS.values(), *METRICS.values())


class TablesError(ConfigError):
    """Input the tables cannot be built from; `field` names the option to change."""


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to read: the argument, else $BYOL_RAY_TRACKING_URI, else
    $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; relative sqlite paths made absolute."""
    chosen = (uri or os.environ.get(TABLES_URI_ENV) or os.environ.get(store.TRACKING_URI_ENV)
              or DEFAULT_URI)
    return store.resolve_tracking_uri(chosen)


def _check_store_exists(uri: str) -> None:
    """Reading a sqlite URI that names no file would silently create an empty store."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path("/" + str(path))
        if not path.is_file():
            raise TablesError("--tracking-uri", f"{uri}: no MLflow store at {path}")


def search_trial_runs(uri: str, experiments: Sequence[str] | None = None,
                      role: str = "trial") -> pd.DataFrame:
    """Every trial run (tag role=trial; role=eval: the evaluation protocols' runs) of the named
    experiments (default: all), as `mlflow.search_runs` returns them, plus an `experiment`
    column holding the name; trials also carry the metrics of the paper's protocols run on
    them (`with_protocol_metrics`)."""
    uri = resolve_uri(uri)
    _check_store_exists(uri)
    names = queries.experiment_names(uri)
    if experiments:
        unknown = sorted(set(experiments) - set(names.values()))
        if unknown:
            raise TablesError("--experiment", f"no experiment named {', '.join(unknown)} at "
                              f"{uri}; there are: {', '.join(sorted(names.values())) or 'none'}")

    def search(wanted: str) -> pd.DataFrame:
        return queries.search_runs_frame(uri, experiments, f"tags.role = '{wanted}'")

    frame = search(role)
    if role == "trial":
        frame = with_protocol_metrics(frame, search("eval"))
    frame.insert(1, "experiment", frame["experiment_id"].map(names) if len(frame) else [])
    return frame


def with_protocol_metrics(trials: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """The trials with the metrics of their FINISHED evaluation runs (`byol-ray eval` or a
    sweep's `--eval`: tag pretrain_run_id = the trial's run id) as if the trial had logged
    them; of two runs of one protocol on one trial, the later counts."""
    trials = trials.copy()
    if not len(trials) or not len(evals) or "tags.pretrain_run_id" not in evals:
        return trials
    finished = evals[evals["status"].eq("FINISHED")].sort_values("start_time", kind="stable")
    row_of = {run_id: i for i, run_id in zip(trials.index, trials["run_id"], strict=True)}
    for _, run in finished.iterrows():
        row = row_of.get(run["tags.pretrain_run_id"])
        if row is None:
            continue
        for column, value in run.items():
            if column.startswith("metrics.eval_") and pd.notna(value):
                trials.loc[row, column] = value
    return trials


def normalise_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per trial with the short columns of `COLUMNS`; absent ones are filled with NA
    (a metric never logged stays NaN, never 0); axis values canonical ("1.0" and "1" of two
    sweeps meet in one cell)."""
    out = pd.DataFrame(index=raw.index)
    for column in ("run_id", "experiment", "status", "start_time", "end_time"):
        out[column] = raw.get(column, pd.NA)
    for tag in TAGS:
        out[tag] = raw.get(f"tags.{tag}", pd.Series(pd.NA, index=raw.index, dtype=object))
    for param, short in PARAMS.items():
        out[short] = raw.get(f"params.{param}", pd.Series(pd.NA, index=raw.index, dtype=object))
    for metric, short in METRICS.items():
        values = raw.get(f"metrics.{metric}", pd.Series(float("nan"), index=raw.index))
        out[short] = pd.to_numeric(values, errors="coerce").astype(float)
    out["seed"] = pd.to_numeric(out["seed"], errors="coerce").astype("Int64")
    out["ablation_value"] = [v if pd.isna(v) else canonical_value(str(a), v)
                             for a, v in zip(out["ablation"], out["ablation_value"], strict=True)]
    return out.reset_index(drop=True)[list(COLUMNS)]


def select_runs(
    runs: pd.DataFrame,
    preset: str | None = None,
    sweeps: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Keep one preset's runs (and only the named sweeps'). With no preset given the runs must
    come from a single preset: averaging cpu-mini with ImageNet cells would mean nothing. Runs
    scored on a validation part of train (`data.eval_on=validation`) chose settings and stay
    out: the tables compare test-split numbers with the paper's."""
    if "eval_on" in runs:
        runs = runs[runs["eval_on"].ne("validation")]
    if sweeps:
        runs = runs[runs["sweep"].isin(list(sweeps))]
    presets = sorted(runs["preset"].dropna().unique())
    if preset is not None:
        runs = runs[runs["preset"] == preset]
    elif len(presets) > 1:
        raise TablesError("--preset", f"the runs come from several presets "
                          f"({', '.join(presets)}); pick one")
    return runs.reset_index(drop=True)


def load_runs(
    uri: str | None = None,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
    sweeps: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The tidy trial runs of one preset at `uri`: search, normalise, select."""
    raw = search_trial_runs(resolve_uri(uri), experiments)
    return select_runs(normalise_runs(raw), preset=preset, sweeps=sweeps)


DENSE_PROTOCOLS = ("detect", "segment")
DENSE_METRICS = {"detect": ("ap50", "ap"), "segment": ("miou",)}
EVAL_COLUMNS = ("run_id", "experiment", "status", "preset", "protocol", "method", "seed",
                "pretrain_run_id", "split", "ap50", "ap", "miou")


def normalise_eval_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per dense-protocol run (`eval segment`, `eval detect`): who it evaluates
    (`method`: byol, simclr, random_init, supervised) and its headline metrics, whichever split
    they were scored on (`eval_detect/test_ap50` -> ap50, split test); NaN when not logged."""
    rows = []
    for _, run in raw.iterrows():
        protocol = run.get("tags.protocol")
        if protocol not in DENSE_PROTOCOLS:
            continue
        row = {"run_id": run.get("run_id"), "experiment": run.get("experiment"),
               "status": run.get("status"), "preset": run.get("tags.preset"),
               "protocol": protocol, "method": run.get("tags.method"),
               "seed": pd.to_numeric(run.get("params.train.seed"), errors="coerce"),
               "pretrain_run_id": run.get("tags.pretrain_run_id"), "split": pd.NA}
        for metric in ("ap50", "ap", "miou"):
            row[metric] = float("nan")
        prefix = f"metrics.eval_{protocol}/"
        for column, value in run.items():
            name = str(column).removeprefix(prefix)
            split, _, metric = name.partition("_")
            if (str(column).startswith(prefix) and metric in DENSE_METRICS[protocol]
                    and not pd.isna(value)):
                row[metric], row["split"] = float(value), split
        rows.append(row)
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


def load_eval_runs(
    uri: str | None = None,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
) -> pd.DataFrame:
    """The tidy dense-protocol runs of one preset at `uri` (see `normalise_eval_runs`)."""
    raw = search_trial_runs(resolve_uri(uri), experiments, role="eval")
    runs = normalise_eval_runs(raw)
    return select_runs(runs.assign(sweep=pd.NA), preset=preset).drop(columns="sweep")
