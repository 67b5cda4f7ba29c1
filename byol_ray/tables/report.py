"""All tables and figures from a tracking URI: `build_tables`, `write_report`, `print_tables`.

`write_report` is what `byol-ray tables` runs: every table as Markdown, CSV and LaTeX, the two
figures as PNG, and `report.md` holding them all with one verdict per table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from byol_ray.tables.augment import build_fig_3b, build_fig_3b_strength, has_strength
from byol_ray.tables.baseline import build_baseline, random_init_top1
from byol_ray.tables.batch import build_fig_3a
from byol_ray.tables.cells import aggregate
from byol_ray.tables.ema import build_table_5a
from byol_ray.tables.figures import plot_fig_3a, plot_fig_3b, save_png
from byol_ray.tables.protocol import METRICS
from byol_ray.tables.reference import PAPER
from byol_ray.tables.render import to_markdown, write_table
from byol_ray.tables.runs import load_runs, resolve_uri
from byol_ray.tables.table import Table
from byol_ray.tables.target import build_table_5b


def build_tables(runs: pd.DataFrame, metric: str = "linear") -> dict[str, Table]:
    """Every table from tidy runs (see `runs.load_runs`), keyed by file stem, in the paper's
    order then the baseline: table_5a, table_5b, fig_3a, fig_3b[, fig_3b_strength], baseline."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRICS)}")
    cells = aggregate(runs, metric)
    baseline = build_baseline(cells, runs, metric)
    floor = random_init_top1(baseline)
    tables = [build_table_5a(cells, metric, floor), build_table_5b(cells, metric, floor),
              build_fig_3a(cells, metric, floor), build_fig_3b(cells, metric, floor)]
    if has_strength(cells):
        tables.append(build_fig_3b_strength(cells, metric, floor))
    tables.append(baseline)
    return {t.key: t for t in tables}


def write_figures(tables: dict[str, Table], out_dir: Path) -> dict[str, Path]:
    """fig_3a.png and fig_3b.png (with the strength panel when that table exists)."""
    return {
        "fig_3a": save_png(plot_fig_3a(tables["fig_3a"]), out_dir / "fig_3a.png"),
        "fig_3b": save_png(plot_fig_3b(tables["fig_3b"], tables.get("fig_3b_strength")),
                           out_dir / "fig_3b.png"),
    }


def _header(runs: pd.DataFrame, uri: str, experiments: Sequence[str] | None,
            preset: str | None, metric: str) -> str:
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    names = ", ".join(sorted(runs["experiment"].dropna().unique())) or "none"
    presets = ", ".join(sorted(runs["preset"].dropna().unique())) or "none"
    lines = [
        "# BYOL ablations: our runs beside the paper",
        "",
        f"- paper: {PAPER} (ImageNet, ResNet-50, 300 epochs, linear top-1)",
        f"- tracking URI: `{uri}`",
        f"- experiments: {', '.join(experiments) if experiments else 'all'} (found: {names})",
        f"- preset: {preset or presets}",
        f"- metric: `eval/{metric}_top1`",
        f"- trial runs: {len(runs)} ({found})",
        "- a cell is the mean ± std over seeds (n = seeds); `missing` = no trial ran it, "
        "`failed` = every trial failed, `[collapsed]` = the embeddings collapsed "
        "(eval/collapsed).",
    ]
    if not len(runs):
        lines.append("- **no trial runs found: every cell below is missing.**")
    return "\n".join(lines) + "\n"


def report_markdown(tables: dict[str, Table], header: str,
                    figures: dict[str, Path] | None = None) -> str:
    """report.md: the header, a verdict summary, then every table (and figure) in turn."""
    summary = "\n".join(f"- {t.title}: {t.verdict}" for t in tables.values())
    parts = [header, "## Verdicts\n\n" + summary + "\n"]
    for key, table in tables.items():
        parts.append(to_markdown(table))
        if figures and key in figures:
            parts.append(f"![{table.title}]({figures[key].name})\n")
    return "\n".join(parts)


@dataclass
class Report:
    """What `generate_report` wrote: report.md's path, the tables and the runs behind them."""

    path: Path
    tables: dict[str, Table]
    runs: pd.DataFrame


def generate_report(
    tracking_uri: str | None,
    out_dir: str | Path,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
    metric: str = "linear",
    sweeps: Sequence[str] | None = None,
) -> Report:
    """Read the trial runs at `tracking_uri`, write every table (.md, .csv, .tex), fig_3a.png,
    fig_3b.png and report.md into `out_dir`; return what was written."""
    uri = resolve_uri(tracking_uri)
    runs = load_runs(uri, experiments, preset, sweeps)
    tables = build_tables(runs, metric)
    out = Path(out_dir)
    for table in tables.values():
        write_table(table, out)
    figures = write_figures(tables, out)
    path = out / "report.md"
    header = _header(runs, uri, experiments, preset, metric)
    path.write_text(report_markdown(tables, header, figures), encoding="utf-8")
    return Report(path, tables, runs)


def write_report(
    tracking_uri: str | None,
    out_dir: str | Path,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
    metric: str = "linear",
    sweeps: Sequence[str] | None = None,
) -> Path:
    """`generate_report`, returning only the path of report.md."""
    return generate_report(tracking_uri, out_dir, experiments, preset, metric, sweeps).path


def print_tables(
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
    metric: str = "linear",
    sweeps: Sequence[str] | None = None,
    file: TextIO | None = None,
) -> dict[str, Table]:
    """Print every table and its verdict to the console (`file`, default stdout) and return
    the tables: the end of a `reproduce` run."""
    tables = build_tables(load_runs(resolve_uri(tracking_uri), experiments, preset, sweeps),
                          metric)
    show_tables(tables, file)
    return tables


def show_tables(tables: dict[str, Table], file: TextIO | None = None) -> None:
    """Print each table with its verdict and notes (`file`, default stdout)."""
    out = file or sys.stdout
    for table in tables.values():
        print(f"\n{table.title}", file=out)
        print(table.display.to_string(index=False), file=out)
        print(table.verdict, file=out)
        for note in table.notes:
            print(f"  note: {note}", file=out)
