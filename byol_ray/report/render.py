"""Tables out: Markdown, LaTeX (booktabs) and CSV files, the two figures, report.md, console.

Hand-written Markdown and LaTeX rather than `DataFrame.to_markdown/to_latex`: no extra
dependency (tabulate), and the text cells ('missing', '72.5 ± 0.3 (n=3) [collapsed]') are
escaped exactly once. Fig. 3a and 3b are redrawn like the paper's (the drop in top-1 on the y
axis; ours solid, the paper's dashed or hatched, one colour per method; a missing or failed
cell is a labelled gap, never a zero; collapsed cells get a black cross) as
`matplotlib.figure.Figure`s on the Agg canvas: no display, no pyplot state. `write_report` is
what `byol-ray tables` runs: every table as .md/.csv/.tex, the figures as PNG and report.md
holding them all with one verdict per table.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from byol_ray.core.masking import mask
from byol_ray.core.methods import compared_methods, label, method_info
from byol_ray.experiments import paper_experiments
from byol_ray.report.runs import load_eval_runs, load_runs, resolve_uri
from byol_ray.tables.cells import METRIC_COLUMN, METRICS, aggregate, numeric, resolve_metric
from byol_ray.tables.reference import PAPER
from byol_ray.tables.table import Inputs, Table
from byol_ray.tables.verdicts import Noise


def build_tables(runs: pd.DataFrame, metric: str | None = None,
                 eval_runs: pd.DataFrame | None = None,
                 grids: Collection[str] | None = None) -> dict[str, Table]:
    """Every experiment's tables (`byol_ray.experiments`, in its order) from tidy runs
    (`load_runs`) and dense-protocol runs (`load_eval_runs`), keyed by file stem. `metric`
    defaults to the preset's (`cells.default_metric`). `grids` (a `reproduce --grids` that
    ran some grids only): the tables of those grids, and of the experiments without a grid
    only those with a cell that ran (e.g. the baseline), not the other grids' empty tables."""
    metric = resolve_metric(metric, runs)
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of: {', '.join(METRICS)}")
    inputs = Inputs.of(runs, metric, eval_runs)
    tables = {}
    for module in paper_experiments():
        grid = getattr(module, "GRID", None)
        if grids is not None and grid is not None and grid.name not in grids:
            continue
        for build in module.TABLES:
            table = build(inputs)
            if table is None:
                continue
            if grids is None or grid is not None or table.data["status"].ne("missing").any():
                tables[table.key] = table
    return tables


def markdown_grid(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub pipe table (every value as text, `|` escaped)."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(table: Table, level: int = 2) -> str:
    """The table as a Markdown section: title, caption, grid, verdict, notes."""
    parts = [f"{'#' * level} {table.title}", f"*{table.caption}*", markdown_grid(table.display),
             f"**{table.verdict}**"]
    if table.notes:
        parts.append("\n".join(f"- {note}" for note in table.notes))
    return "\n\n".join(parts) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "τ": r"$\tau$", "β": r"$\beta$", "✓": r"\checkmark{}", "✗": r"$\times$",
    "–": "--", "≤": r"$\leq$", "§": r"\S{}",
}


def latex_escape(text: object) -> str:
    """Text safe inside a LaTeX tabular (special characters and the symbols we use)."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """The table as a LaTeX `table` float (booktabs; needs amssymb for \\checkmark)."""
    columns = "l" * len(table.display.columns)
    body = [" & ".join(latex_escape(v) for v in row) + r" \\"
            for row in table.display.itertuples(index=False)]
    caption = latex_escape(f"{table.title}. {table.caption} {table.verdict}")
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{caption}}}", rf"\label{{tab:{table.key.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
        " & ".join(latex_escape(c) for c in table.display.columns) + r" \\",
        r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", "",
    ])


def write_table(table: Table, out_dir: Path) -> list[Path]:
    """Write `<key>.md`, `<key>.csv` (the numbers: missing cells empty, never 0) and
    `<key>.tex` into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{table.key}.{ext}" for ext in ("md", "csv", "tex")]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    table.data.to_csv(paths[1], index=False)
    paths[2].write_text(to_latex(table), encoding="utf-8")
    return paths


def _colours(methods: Sequence[str]) -> dict[str, str]:
    """Each method's colour: its entry's (`core.methods`), else matplotlib's next one."""
    spare = iter(f"C{i}" for i in range(2, 10 + len(methods)))
    return {m: method_info(m).colour or next(spare) for m in methods}


def _methods(data: pd.DataFrame) -> tuple[str, ...]:
    """The methods a drop table's figure draws: those of its `data` (`Inputs.methods`)."""
    found = set(data["method"])
    return tuple(m for m in compared_methods(found) if m in found)


def _gaps(data: pd.DataFrame) -> str:
    """'failed: BYOL 128; missing: SimCLR 64' for the cells a figure cannot draw (missing
    ones only in rows where some trial ran: the paper's other rows are simply not ours)."""
    ran = set(data.loc[data["n_seeds"] + data["n_failed"] + data["n_pending"] > 0, "row"])
    parts = []
    for status, word in (("failed", "failed"), ("pending", "not finished"),
                         ("missing", "missing")):
        bad = data[data["status"].eq(status) & (data["row"].isin(ran) | (status != "missing"))]
        if len(bad):
            parts.append(f"{word}: " + ", ".join(f"{label(r.method)} {r.label}"
                                                 for r in bad.itertuples()))
    return "; ".join(parts)


def _footnote(fig: Figure, text: str) -> None:
    if text:
        fig.text(0.01, 0.01, text, fontsize=7, va="bottom", wrap=True)


def _drop_lines(ax, data: pd.DataFrame, x_label: str, log2: bool) -> None:
    colours = _colours(_methods(data))
    for method, colour in colours.items():
        part = data[data["method"].eq(method)].assign(x=lambda d: d["row"].map(numeric))
        part = part.sort_values("x")
        drawn = part[part["drop"].notna()]  # a line through the cells that have a value
        ax.plot(drawn["x"], drawn["drop"], "-o", color=colour, label=f"{label(method)} (ours)")
        crossed = part[(part["n_collapsed"] > 0) & part["drop"].notna()]
        ax.plot(crossed["x"], crossed["drop"], "kx", markersize=10, linestyle="none")
        paper = part[part["paper_drop"].notna()]
        if len(paper):
            ax.plot(paper["x"], paper["paper_drop"], "--s", color=colour, alpha=0.5,
                    markersize=4, label=f"{label(method)} (paper)")
    if log2:
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
        ticks = sorted({numeric(r) for r in data["row"]})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(x_label)
    ax.set_ylabel("drop in top-1 (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_fig_3a(table: Table) -> Figure:
    """Fig. 3a: drop from the largest batch against batch size (log scale, largest left)."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _drop_lines(ax, table.data, "batch size", log2=True)
    ax.set_title("Fig. 3a: impact of batch size (drop from the largest batch)", fontsize=10)
    _footnote(fig, _gaps(table.data))
    return fig


def _drop_bars(ax, data: pd.DataFrame) -> None:
    rows = [r for r in dict.fromkeys(data["row"]) if r != "baseline"]
    labels = data.drop_duplicates("row").set_index("row")["label"]
    x = np.arange(len(rows))
    methods = _methods(data)
    colours = _colours(methods)
    series = [(m, "drop", False) for m in methods] + [  # the paper's: ours only (BYOL, SimCLR)
        (m, "paper_drop", True) for m in compared_methods() if m in methods]
    width = 0.8 / len(series)
    ours = data[data["method"].isin(methods)].pivot_table(
        index="row", columns="method", values="n_seeds", aggfunc="sum")
    for i, (method, column, is_paper) in enumerate(series):
        part = data[data["method"].eq(method)].set_index("row")
        offset = (i - (len(series) - 1) / 2) * width
        legend = f"{label(method)} ({'paper' if is_paper else 'ours'})"
        for j, row in enumerate(rows):
            value, status = part.at[row, column], part.at[row, "status"]
            if not math.isnan(value):
                ax.bar(x[j] + offset, value, width, color=colours[method],
                       alpha=0.4 if is_paper else 0.9, hatch="//" if is_paper else None,
                       edgecolor=colours[method], label=legend)
                legend = None  # one legend entry per series
                if not is_paper and part.at[row, "n_collapsed"] > 0:
                    ax.plot(x[j] + offset, value, "kx", markersize=8)
            elif not is_paper and ours.loc[row].sum() + (status != "missing") > 0:
                word = "missing" if status == "missing" else status.replace("pending", "running")
                ax.text(x[j] + offset, 0, f" {word}", rotation=90, fontsize=6, ha="center",
                        va="bottom")
            elif not is_paper and method == methods[0]:
                ax.text(x[j] - width, 0, " not run", rotation=90, fontsize=6, ha="center",
                        va="bottom", color="grey")
    ax.legend(fontsize=7)
    ax.set_xticks(x, [labels[r] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("drop in top-1 from baseline (points)")
    ax.grid(axis="y", alpha=0.3)


def plot_fig_3b(table: Table, strength: Table | None = None) -> Figure:
    """Fig. 3b: drop from the full recipe per removal (bars), and, when the colour strength
    was swept, the drop against strength in a second panel."""
    fig = Figure(figsize=(11 if strength else 7, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if strength else 1, squeeze=False,
                        width_ratios=[2, 1] if strength else None)[0]
    _drop_bars(axes[0], table.data)
    axes[0].set_title("Fig. 3b: impact of removing augmentations", fontsize=10)
    gaps = _gaps(table.data)
    if strength is not None:
        _drop_lines(axes[1], strength.data, "colour-jitter strength", log2=False)
        axes[1].set_title("colour strength (drop from strength 1)", fontsize=10)
        gaps = "; ".join(g for g in (gaps, _gaps(strength.data)) if g)
    _footnote(fig, gaps)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG (Agg, 150 dpi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=150)
    return path


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
        f"- tracking URI: `{mask(uri)}`",  # no password of the URI in the report
        f"- experiments: {', '.join(experiments) if experiments else 'all'} (found: {names})",
        f"- preset: {preset or presets}",
        f"- metric: `eval/{METRIC_COLUMN[metric]}`",
        f"- {Noise.of(aggregate(runs, metric)).describe()}",
        f"- trial runs: {len(runs)} ({found})",
        "- a cell is the mean ± std over seeds (n = seeds); `missing` = no trial ran it, "
        "`failed` = every trial failed, `[collapsed]` = the embeddings collapsed "
        "(eval/collapsed); a verdict's ✓/✗ needs a difference beyond the seeds' noise, "
        "≈ = within noise.",
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
    metric: str | None = None,
    sweeps: Sequence[str] | None = None,
    grids: Collection[str] | None = None,
) -> Report:
    """Read the trial runs at `tracking_uri`, write every table (.md, .csv, .tex), fig_3a.png,
    fig_3b.png and report.md into `out_dir`; return what was written. `grids`: as in
    `build_tables`."""
    uri = resolve_uri(tracking_uri)
    runs = load_runs(uri, experiments, preset, sweeps)
    metric = resolve_metric(metric, runs)
    tables = build_tables(runs, metric, load_eval_runs(uri, experiments, preset), grids)
    out = Path(out_dir)
    for table in tables.values():
        write_table(table, out)
    figures = write_figures(tables, out)
    path = out / "report.md"
    header = _header(runs, uri, experiments, preset, metric)
    path.write_text(report_markdown(tables, header, figures), encoding="utf-8")
    return Report(path, tables, runs)


def write_report(*args: Any, **kwargs: Any) -> Path:
    """`generate_report` (same arguments), returning only the path of report.md."""
    return generate_report(*args, **kwargs).path


def print_tables(
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    preset: str | None = None,
    metric: str | None = None,
    sweeps: Sequence[str] | None = None,
    file: TextIO | None = None,
) -> dict[str, Table]:
    """Print every table and its verdict to the console (`file`, default stdout) and return
    the tables: the end of a `reproduce` run."""
    uri = resolve_uri(tracking_uri)
    tables = build_tables(load_runs(uri, experiments, preset, sweeps),
                          metric,  # None: the preset's default metric
                          load_eval_runs(uri, experiments, preset))
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
