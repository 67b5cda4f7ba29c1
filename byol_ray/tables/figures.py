"""Fig. 3a and 3b redrawn like the paper's: BYOL vs SimCLR, the drop in top-1 on the y axis.

Ours are solid, the paper's dashed or hatched, in the same colour per method. A missing or
failed cell is a gap with a label (never a zero); collapsed cells get a black cross. Figures
are `matplotlib.figure.Figure`s drawn on the Agg canvas, so no display and no pyplot state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from byol_ray.tables.axes import numeric
from byol_ray.tables.drops import METHODS, NAMES
from byol_ray.tables.table import Table

COLOURS = {"byol": "#1f77b4", "simclr": "#d62728"}


def _gaps(data: pd.DataFrame) -> str:
    """'failed: BYOL 128; missing: SimCLR 64' for the cells a figure cannot draw (missing
    ones only in rows where some trial ran: the paper's other rows are simply not ours)."""
    ran = set(data.loc[data["n_seeds"] + data["n_failed"] + data["n_pending"] > 0, "row"])
    parts = []
    for status, word in (("failed", "failed"), ("pending", "not finished"),
                         ("missing", "missing")):
        bad = data[data["status"].eq(status) & (data["row"].isin(ran) | (status != "missing"))]
        if len(bad):
            parts.append(f"{word}: " + ", ".join(f"{NAMES.get(r.method, r.method)} {r.label}"
                                                 for r in bad.itertuples()))
    return "; ".join(parts)


def _footnote(fig: Figure, text: str) -> None:
    if text:
        fig.text(0.01, 0.01, text, fontsize=7, va="bottom", wrap=True)


def _drop_lines(ax, data: pd.DataFrame, x_label: str, log2: bool) -> None:
    for method in METHODS:
        part = data[data["method"].eq(method)].assign(x=lambda d: d["row"].map(numeric))
        part = part.sort_values("x")
        colour = COLOURS[method]
        drawn = part[part["drop"].notna()]  # a line through the cells that have a value
        ax.plot(drawn["x"], drawn["drop"], "-o", color=colour, label=f"{NAMES[method]} (ours)")
        crossed = part[(part["n_collapsed"] > 0) & part["drop"].notna()]
        ax.plot(crossed["x"], crossed["drop"], "kx", markersize=10, linestyle="none")
        paper = part[part["paper_drop"].notna()]
        if len(paper):
            ax.plot(paper["x"], paper["paper_drop"], "--s", color=colour, alpha=0.5,
                    markersize=4, label=f"{NAMES[method]} (paper)")
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
    width = 0.2
    series = [(m, "drop", False) for m in METHODS] + [(m, "paper_drop", True) for m in METHODS]
    ours = data[data["method"].isin(METHODS)].pivot_table(
        index="row", columns="method", values="n_seeds", aggfunc="sum")
    for i, (method, column, is_paper) in enumerate(series):
        part = data[data["method"].eq(method)].set_index("row")
        offset = (i - 1.5) * width
        label = f"{NAMES[method]} ({'paper' if is_paper else 'ours'})"
        for j, row in enumerate(rows):
            value, status = part.at[row, column], part.at[row, "status"]
            if not math.isnan(value):
                ax.bar(x[j] + offset, value, width, color=COLOURS[method],
                       alpha=0.4 if is_paper else 0.9, hatch="//" if is_paper else None,
                       edgecolor=COLOURS[method], label=label)
                label = None  # one legend entry per series
                if not is_paper and part.at[row, "n_collapsed"] > 0:
                    ax.plot(x[j] + offset, value, "kx", markersize=8)
            elif not is_paper and ours.loc[row].sum() + (status != "missing") > 0:
                word = "missing" if status == "missing" else status.replace("pending", "running")
                ax.text(x[j] + offset, 0, f" {word}", rotation=90, fontsize=6, ha="center",
                        va="bottom")
            elif not is_paper and method == METHODS[0]:
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
