"""BYOL vs SimCLR over one axis, with each method's drop from a reference row (Fig. 3a/3b).

Fig. 3 of the paper plots the *decrease* of top-1 from a reference setting (the largest batch,
the full augmentation recipe), for BYOL and for SimCLR: that drop is what compares across
datasets, and the question each figure asks is whether BYOL's drop is the smaller one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from byol_ray.tables.reference import Reference
from byol_ray.tables.table import (
    NOT_IN_PAPER,
    PAPER_TOP1,
    cell_record,
    data_frame,
    format_paper,
    row_protocol,
)
from byol_ray.tables.verdict import Check, known

METHODS = ("byol", "simclr")
NAMES = {"byol": "BYOL", "simclr": "SimCLR"}
DROP_COLUMNS = ("drop", "drop_from", "paper_drop")

CellLookup = Callable[[str, str], dict[str, Any] | None]  # (row, method) -> cell or None


def drop_records(
    rows: list[tuple[str, str]],
    lookup: CellLookup,
    refs: dict[tuple[str, str], Reference],
    ours_from: dict[str, str | None],
    paper_from: str | None,
) -> list[dict[str, Any]]:
    """`cell_record`s for every (row, method), each with its drop from the method's reference
    row: `ours_from[method]` for our cells, `paper_from` for the paper's (NaN when either
    value is missing: a drop is never computed from a missing cell)."""
    records = []
    for method in METHODS:
        base = lookup(ours_from[method], method) if ours_from[method] else None
        base_mean = base["mean"] if base and base["status"] == "ok" else math.nan
        paper_base = refs.get((paper_from, method)) if paper_from else None
        for row, label in rows:
            cell = lookup(row, method)
            ref = refs.get((row, method))
            record = cell_record(row, label, method, cell, ref)
            record["drop"] = round(base_mean - record["mean"], 6)
            record["drop_from"] = ours_from[method] or ""
            record["paper_drop"] = (round(paper_base.top1 - ref.top1, 6) if paper_base and ref
                                    else math.nan)
            records.append(record)
    return records


def _format_drop(record: dict[str, Any]) -> str:
    if record["row"] == record["drop_from"]:
        return "0 (reference)"
    if not math.isnan(record["drop"]):
        return f"{record['drop']:.1f}"
    if record["status"] != "ok":
        return record["cell"] if record["status"] != "pending" else "not finished"
    return "no reference cell"


def _format_paper_drop(record: dict[str, Any], paper_from: str | None) -> str:
    if math.isnan(record["paper_top1"]):
        return NOT_IN_PAPER
    if record["row"] == paper_from:
        return "0 (reference)"
    return f"{record['paper_drop']:.1f}" if not math.isnan(record["paper_drop"]) else "–"


def display_frame(axis: str, rows: list[tuple[str, str]], records: list[dict[str, Any]],
                  refs: dict[tuple[str, str], Reference],
                  paper_from: str | None = None) -> pd.DataFrame:
    """The display table: per row, ours (top-1, drop) for BYOL and SimCLR, the protocol of
    those cells, then the paper's top-1 and drop (no paper columns when `refs` is empty)."""
    by_key = {(r["row"], r["method"]): r for r in records}
    columns: dict[str, list[str]] = {axis: [label for _, label in rows]}
    for method in METHODS:
        columns[f"{NAMES[method]} ours (%)"] = [by_key[(row, method)]["cell"] for row, _ in rows]
        columns[f"{NAMES[method]} drop (ours)"] = [_format_drop(by_key[(row, method)])
                                                   for row, _ in rows]
    columns["protocol (ours)"] = [row_protocol([by_key[(row, m)] for m in METHODS])
                                  for row, _ in rows]
    for method in METHODS if refs else ():
        columns[f"{NAMES[method]} {PAPER_TOP1}"] = [format_paper(refs.get((row, method)))
                                                 for row, _ in rows]
        columns[f"{NAMES[method]} drop (paper)"] = [
            _format_paper_drop(by_key[(row, method)], paper_from) for row, _ in rows]
    return pd.DataFrame(columns)


def drops_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The table's `data`: the common CSV columns plus drop, drop_from and paper_drop."""
    return data_frame(records, DROP_COLUMNS)


def byol_loses_less(data: pd.DataFrame, what: str) -> Check:
    """Is BYOL's drop ≤ SimCLR's where the paper's is (and not where the paper's is not)?
    Rows the paper lacks take its general claim: BYOL loses no more than SimCLR."""
    byol, simclr = (known(method_values(data, m, "drop")) for m in METHODS)
    paper_byol, paper_simclr = (known(method_values(data, m, "paper_drop")) for m in METHODS)
    references = set(data["drop_from"])
    common = [row for row in byol if row in simclr and row not in references]
    if not common:
        return Check(None, f"BYOL's drop ≤ SimCLR's where the paper's is, at most {what}")
    wins = agree = 0
    for row in common:
        ours = byol[row] <= simclr[row] + 1e-9
        paper = (paper_byol[row] <= paper_simclr[row] + 1e-9
                 if row in paper_byol and row in paper_simclr else True)
        wins += ours
        agree += ours == paper
    return Check(agree * 2 > len(common),
                 f"BYOL's drop ≤ SimCLR's at {wins}/{len(common)} {what}, the paper's answer "
                 f"at {agree}/{len(common)}")


def method_values(data: pd.DataFrame, method: str, column: str) -> dict[str, float]:
    """{row: value} of one method's column (mean, drop, paper_top1...), for shape checks."""
    part = data[data["method"].eq(method)]
    return dict(zip(part["row"], part[column], strict=True))
