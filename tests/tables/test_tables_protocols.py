"""The paper's protocols in the tables: evaluation runs joined to their trials, the linear
metric taking the paper's linear evaluation where a trial has it, Tables 1 and 2."""

import pandas as pd
from synthetic_runs import TRIALS, raw_frame, trial

from byol_ray.report.render import build_tables
from byol_ray.report.runs import normalise_runs, select_runs, with_protocol_metrics
from byol_ray.tables.cells import NOT_PAPER


def _evals(rows: list[tuple[str, str, str, dict]]) -> pd.DataFrame:
    """Evaluation runs as mlflow.search_runs gives them: (pretrain run, status, start, metrics)."""
    return pd.DataFrame([
        {"run_id": f"eval{i}", "status": status, "start_time": pd.Timestamp(start, tz="UTC"),
         "tags.role": "eval", "tags.pretrain_run_id": pretrain,
         **{f"metrics.{k}": v for k, v in metrics.items()}}
        for i, (pretrain, status, start, metrics) in enumerate(rows)])


def _run_id(raw: pd.DataFrame, method: str, ablation: str, value: str, seed: int = 0) -> str:
    match = (raw["tags.method"].eq(method) & raw["tags.ablation"].eq(ablation)
             & raw["tags.ablation_value"].eq(value) & raw["tags.seed"].eq(str(seed))
             & raw["status"].eq("FINISHED"))
    return raw.loc[match, "run_id"].iloc[-1]


def _with_protocols() -> pd.DataFrame:
    raw = raw_frame(TRIALS)
    byol = [_run_id(raw, "byol", "recipe", "baseline", s) for s in (0, 1)]
    simclr = _run_id(raw, "simclr", "recipe", "baseline")
    random = _run_id(raw, "random_init", "random_init", "random_init")
    linear, one, ten = ("eval_linear/test_top1", "eval_finetune_1pct/test_top1",
                        "eval_finetune_10pct/test_top1")
    evals = _evals([
        (byol[0], "FINISHED", "2025-01-02", {linear: 50.0}),  # superseded by the later run
        (byol[0], "FINISHED", "2025-01-03", {linear: 93.0, one: 60.0, ten: 80.0}),
        (byol[1], "FINISHED", "2025-01-03", {linear: 94.0, one: 62.0, ten: 82.0}),
        (byol[1], "FAILED", "2025-01-04", {linear: 10.0}),  # not finished: ignored
        (simclr, "FINISHED", "2025-01-03", {linear: 88.0}),
        (random, "FINISHED", "2025-01-03", {linear: 40.0, one: 20.0, ten: 35.0}),
    ])
    return normalise_runs(with_protocol_metrics(raw, evals))


def test_evaluation_runs_join_their_trials_latest_finished_run_first():
    runs = _with_protocols()
    byol = runs[runs["method"].eq("byol") & runs["ablation"].eq("recipe")
                & runs["ablation_value"].eq("baseline")].sort_values("seed")
    assert byol["paper_linear_top1"].tolist() == [93.0, 94.0]
    assert byol["finetune_10pct_top1"].tolist() == [80.0, 82.0]
    assert runs["paper_linear_top1"].notna().sum() == 4


def test_linear_cells_use_the_paper_s_protocol_where_a_trial_ran_it_and_say_so():
    tables = build_tables(_with_protocols(), metric="linear")
    fig_3b = tables["fig_3b"].data.set_index(["row", "method"])
    cell = fig_3b.loc[("baseline", "byol")]
    assert cell["mean"] == 93.5 and "the paper's protocol" in cell["protocol"]
    other = fig_3b.loc[("crop_only", "byol")]
    assert other["protocol"].startswith("linear probe, offline")


def test_tables_1_and_2_beside_the_paper_s_values():
    tables = build_tables(_with_protocols(), metric="few_label")
    one = tables["table_1"].data.set_index("row")
    assert one.loc["byol", "mean"] == 93.5 and one.loc["byol", "paper_top1"] == 74.3
    assert one.loc["simclr", "mean"] == 88.0 and one.loc["random_init", "paper_top1"] == 1.4
    assert "linear evaluation" in tables["table_1"].caption
    two = tables["table_2"].data.set_index("row")
    assert two.loc["byol_1pct", "mean"] == 61.0 and two.loc["byol_1pct", "paper_top1"] == 53.2
    assert two.loc["byol_10pct", "paper_top1"] == 68.8
    assert two.loc["simclr_10pct", "cell"].startswith("missing")
    assert list(tables["table_2"].display.columns[:3]) == ["method", "ours: 1% labels",
                                                           "paper: 1% labels"]
    assert "table_1" not in build_tables(normalise_runs(raw_frame(TRIALS)))


def _gpu_runs() -> pd.DataFrame:
    """Table 5a on a GPU preset, two seeds per τ: τ = 0.99 and τ = 0 ran the paper's linear
    evaluation, τ = 1 only the offline probe (a trial without --eval linear)."""
    trials = []
    for tau, top1 in (("1", 60.0), ("0.99", 90.0), ("0", 10.0)):
        for seed, delta in ((0, -0.25), (1, 0.25)):
            run = trial("ema_decay", "byol", "tau_base", tau, seed, top1 + delta,
                        preset="imagenet-300")
            if tau != "1":
                run["metrics"]["eval_linear/test_top1"] = top1 - 5.0 + delta
            trials.append(run)
    return select_runs(normalise_runs(raw_frame(trials)), preset="imagenet-300")


def test_a_probe_only_cell_on_a_gpu_preset_says_so_and_no_verdict_compares_it():
    t = build_tables(_gpu_runs())["table_5a"]  # the preset's metric: linear
    data = t.data.set_index("row")
    probe, paper = data.loc["1"], data.loc["0.99"]
    assert probe["mean"] == 60.0 and not probe["comparable"]
    assert probe["cell"] == f"60.0 ± 0.4 (n=2) [{NOT_PAPER}]"
    assert probe["protocol"] == f"linear probe, offline, digits test split [{NOT_PAPER}]"
    assert paper["mean"] == 85.0 and paper["comparable"]
    assert "the paper's protocol [P App. C.1]" in paper["protocol"]
    assert NOT_PAPER not in paper["cell"]
    # τ = 1 (paper 18.8) takes part in no check: its own is "no runs", the others skip it
    assert "? τ_base = 1 far below the best (no runs)" in t.verdict
    assert "τ_base = 0.99 above τ_base = 0 " in t.verdict and "60.0" not in t.verdict
    assert "by pair: 1 ✓ of 1" in t.verdict  # 0.99 against 0 only
    # the same probe numbers on the cpu-mini miniature are its declared metric: compared
    mini_runs = select_runs(normalise_runs(raw_frame(TRIALS)), preset="cpu-mini")
    mini = build_tables(mini_runs, metric="linear")["table_5a"]
    assert mini.data.set_index("row").loc["1", "comparable"]
