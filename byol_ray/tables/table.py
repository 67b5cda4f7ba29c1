"""`Table`: one of the paper's tables or figures rebuilt from our cells, beside the paper's.

A table holds two frames: `display` (text, as Markdown and LaTeX show it: every cell formatted,
missing and failed cells spelled out) and `data` (numbers, one row per cell, written as CSV),
plus its caption (the protocols) and a one-line verdict on whether its shape agrees with the
paper. `cell_record` builds the rows of `data`, so every table has the same CSV columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from byol_ray.tables.cells import format_cell
from byol_ray.tables.reference import Reference

NOT_IN_PAPER = "not in paper"
PAPER_TOP1 = "paper top-1 (%; linear probe, offline, ImageNet val)"  # header of paper columns
DATA_COLUMNS = ("row", "label", "method", "mean", "std", "n_seeds", "n_failed", "n_pending",
                "n_collapsed", "status", "cell", "protocol", "failure_reasons", "paper_top1",
                "paper_collapsed", "paper_source")


@dataclass
class Table:
    """A rebuilt table: what to show, the numbers behind it, and how it compares."""

    key: str  # file stem, e.g. "table_5a"
    title: str
    caption: str
    display: pd.DataFrame
    data: pd.DataFrame
    verdict: str
    notes: list[str] = field(default_factory=list)


def format_paper(ref: Reference | None) -> str:
    """A paper value as a cell: '72.5', '0.3 [collapsed]', or 'not in paper'."""
    if ref is None:
        return NOT_IN_PAPER
    return f"{ref.top1:.1f}" + (" [collapsed]" if ref.collapsed else "")


def cell_record(row: str, label: str, method: str, cell: dict[str, Any] | None,
                ref: Reference | None) -> dict[str, Any]:
    """One row of a table's `data`: our cell's numbers (NaN when missing) and the paper's."""
    nan = float("nan")
    ours = cell or {}
    return {
        "row": row,
        "label": label,
        "method": method,
        "mean": ours.get("mean", nan),
        "std": ours.get("std", nan),
        "n_seeds": ours.get("n_seeds", 0),
        "n_failed": ours.get("n_failed", 0),
        "n_pending": ours.get("n_pending", 0),
        "n_collapsed": ours.get("n_collapsed", 0),
        "status": ours.get("status", "missing"),
        "cell": format_cell(cell),
        "protocol": ours.get("protocol", ""),
        "failure_reasons": ours.get("failure_reasons", ""),
        "paper_top1": ref.top1 if ref else nan,
        "paper_collapsed": ref.collapsed if ref else False,
        "paper_source": ref.source if ref else "",
    }


def data_frame(records: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The `data` frame of a table from `cell_record` rows (plus table-specific columns)."""
    return pd.DataFrame(records, columns=[*DATA_COLUMNS, *extra])


def row_protocol(records: list[dict[str, Any]]) -> str:
    """The protocols of a display row's cells, once each ('' when no cell ran)."""
    seen = dict.fromkeys(p for r in records for p in r["protocol"].split(" / ") if p)
    return " / ".join(seen) or "–"


def failure_notes(data: pd.DataFrame) -> list[str]:
    """One note per cell with failed trials, naming the reasons the runs recorded."""
    notes = []
    for r in data[data["n_failed"] > 0].itertuples():
        reason = r.failure_reasons or "no failure_reason tag"
        where = r.row if r.row == r.label else f"{r.row} ({r.label})"
        notes.append(f"{where}, {r.method}: {r.n_failed} failed trial(s): {reason}")
    return notes


def sources(data: pd.DataFrame) -> str:
    """The distinct paper sources of a table's reference values, for its caption."""
    found = [s for s in dict.fromkeys(data["paper_source"]) if s]
    return "; ".join(found)
