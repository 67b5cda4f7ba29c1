"""Console summary of a finished run, read back from MLflow (what the UI will show)."""

from __future__ import annotations

from byol_ray.runtime.tracking.run import Run
from byol_ray.runtime.tracking.ui import browse_hint


def print_run_summary(run_id: str, uri: str) -> None:
    """Print the run's kNN / linear top-1 beside the random-init baseline, and where it lives
    (`uri`: the resolved tracking URI; the `mlflow ui` command and its runs table's URL)."""
    run = Run(uri, run_id).read()
    metrics, tags, params = run.metrics, run.tags, run.params
    k = params.get("eval.knn_k", "[20]").strip("[]").split(",")[0].strip()

    def cell(name: str) -> str:
        return f"{metrics[name]:6.2f}" if name in metrics else "     –"

    rows = [("random-init encoder", "baseline/"),
            (f"{tags.get('method', '?')} after {params.get('train.epochs', '?')} epochs", "eval/")]
    width = max(len(label) for label, _ in rows)
    print(f"\nrun {run_id} ({run.status}), preset {tags.get('preset')}, MLflow {uri}")
    few = params.get("eval.few_label_per_class", "0")
    few_head = f"  kNN, {few} labels/class (%)" if few not in ("0", "") else ""
    split = ("validation part of train" if params.get("data.eval_on") == "validation"
             else "held-out test split")
    print(f"{'':<{width}}  kNN top-1 (k={k}, %)  linear top-1 (%){few_head}   [{split}]")
    for label, prefix in rows:
        knn, linear = cell(prefix + "knn_top1"), cell(prefix + "linear_top1")
        few_cell = cell(prefix + "few_label_knn_top1") if few_head else ""
        print(f"{label:<{width}}  {knn:>20}  {linear:>16}{few_cell:>{len(few_head)}}")
    if "eval/embedding_std" in metrics:
        state = "COLLAPSED" if metrics.get("eval/collapsed") else "not collapsed"
        print(f"embedding std x sqrt(d): {metrics['eval/embedding_std']:.3f} ({state})")
    print(browse_hint(uri, run.experiment_id))
