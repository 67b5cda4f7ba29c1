"""The `byol-ray tables` sub-command; `byol_ray.cli` adds it with `add_tables_command`."""

from __future__ import annotations

import argparse
from pathlib import Path

from byol_ray.cli.options import METRICS


def add_tables_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `tables` on the CLI's sub-parsers; its handler returns the exit status."""
    parser = commands.add_parser(
        "tables", help="the paper's tables and figures from the sweeps' MLflow runs",
        description="Read the sweeps' trial runs from MLflow, average over seeds and write "
                    "Tables 5a/5b, Fig. 3a/3b and the random-init baseline beside the paper's "
                    "values (Markdown, CSV, LaTeX, PNG, report.md).")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow tracking URI to read (default: $BYOL_RAY_TRACKING_URI, "
                             "else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--experiment", dest="experiments", action="extend", nargs="+",
                        metavar="NAME", help="only these experiments, e.g. ema_decay/cpu-mini "
                                             "(repeatable; default: all)")
    parser.add_argument("--sweep", dest="sweeps", action="extend", nargs="+", metavar="NAME",
                        help="only these sweeps (tag sweep; default: all)")
    parser.add_argument("--preset", default=None,
                        help="only this preset's runs (required when the store holds several)")
    parser.add_argument("--metric", choices=METRICS, default=None,
                        help="linear: offline linear probe (the paper's protocol); knn: the "
                             "kNN monitor; few_label: kNN with a few labels per class "
                             "(default: the preset's, few_label on cpu-mini, else linear)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write into")
    parser.set_defaults(handler=run_tables_command)
    return parser


def run_tables_command(args: argparse.Namespace) -> int:
    """Write the report, then print one verdict line per table and where the files are."""
    from byol_ray.report.render import generate_report  # pandas/matplotlib only when used

    report = generate_report(args.tracking_uri, args.out, args.experiments, args.preset,
                             args.metric, args.sweeps)
    print(f"{len(report.runs)} trial runs read")
    for table in report.tables.values():
        print(f"{table.title}\n  {table.verdict}")
    print(f"wrote {report.path} (each table as .md, .csv, .tex; fig_3a.png, fig_3b.png)")
    return 0
