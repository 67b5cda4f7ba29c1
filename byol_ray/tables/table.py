"""What every rebuilt table is made of, written once; each experiment's builder composes it.

A `Table` holds `display` (text, as Markdown and LaTeX show it: missing and failed cells
spelled out), `data` (numbers, one `cell_record` per cell beside the paper's value: the CSV),
its caption (the protocols) and a verdict from the noise-aware checks of `verdicts`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from byol_ray.core.methods import compared_methods, label, untrained_names
from byol_ray.tables.cells import (
    BASELINE_COLUMN,
    METRIC_COLUMN,
    NOT_PAPER,
    PROTOCOL_COLUMN,
    aggregate,
    format_cell,
)
from byol_ray.tables.reference import Reference
from byol_ray.tables.verdicts import (
    NO_RUNS,
    Check,
    Difference,
    Estimate,
    Noise,
    contrast,
    majority,
    order_check,
    tally,
    verdict_line,
)

NOT_IN_PAPER = "not in paper"
PAPER_TOP1 = "paper top-1 (%; linear probe, offline, ImageNet val)"  # header of paper columns
DATA_COLUMNS = ("row", "label", "method", "mean", "std", "n_seeds", "n_failed", "n_pending",
                "n_collapsed", "status", "cell", "protocol", "comparable", "failure_reasons",
                "paper_top1", "paper_collapsed", "paper_source")
# The methods the paper's comparison tables run and check: BYOL and SimCLR (`core.methods`,
# `compared`). A table shows these and any outside method with cells (`Inputs.methods`).
METHODS = compared_methods()


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


def make(key: str, title: str, caption: str, display: pd.DataFrame, data: pd.DataFrame,
         checks: list[Check], notes: list[str] | None = None) -> Table:
    """A table whose verdict sums up `checks`; its notes default to the failed cells'."""
    return Table(key, title, caption, display, data, verdict_line(checks),
                 failure_notes(data) if notes is None else notes)


@dataclass(frozen=True)
class Inputs:
    """What every builder reads: tidy trial runs (`runs.load_runs`), the metric, the cells
    averaged from them, the seeds' noise pooled over every cell (one estimate serves every
    verdict), the random-init floor, the dense-protocol runs (None: not read) and the methods
    the comparison tables show (ours, then any outside method the runs hold)."""

    runs: pd.DataFrame
    metric: str
    cells: pd.DataFrame
    noise: Noise
    floor: Estimate | None  # our random-init top-1: its own run, else the trials' epoch 0
    eval_runs: pd.DataFrame | None = None
    methods: tuple[str, ...] = METHODS

    @classmethod
    def of(cls, runs: pd.DataFrame, metric: str = "linear",
           eval_runs: pd.DataFrame | None = None) -> Inputs:
        """The inputs of `runs` under `metric`: cells, noise and floor derived from them."""
        cells = aggregate(runs, metric)
        floor = Estimate.of(random_init_cell(cells)) or Estimate.of(untrained_cell(runs, metric))
        return cls(runs, metric, cells, Noise.of(cells), floor, eval_runs,
                   compared_methods(cells["method"]))


def format_paper(ref: Reference | None) -> str:
    """A paper value as a cell: '72.5', '0.3 [collapsed]', or 'not in paper'."""
    if ref is None:
        return NOT_IN_PAPER
    return f"{ref.top1:.1f}" + (" [collapsed]" if ref.collapsed else "")


def cell_record(row: str, label: str, method: str, cell: dict[str, Any] | None,
                ref: Reference | None) -> dict[str, Any]:
    """One row of a table's `data`: our cell's numbers (NaN when missing) and the paper's."""
    ours, nan = cell or {}, math.nan
    missing = {"mean": nan, "std": nan, "n_seeds": 0, "n_failed": 0, "n_pending": 0,
               "n_collapsed": 0, "status": "missing"}
    return {"row": row, "label": label, "method": method,
            **{k: ours.get(k, default) for k, default in missing.items()},
            "cell": format_cell(cell), "protocol": ours.get("protocol", ""),
            "comparable": bool(ours.get("comparable", True)),
            "failure_reasons": ours.get("failure_reasons", ""),
            "paper_top1": ref.top1 if ref else nan,
            "paper_collapsed": ref.collapsed if ref else False,
            "paper_source": ref.source if ref else ""}


def cell_display(leading: dict[str, list[str]], records: list[dict[str, Any]],
                 refs: list[Reference | None], ours: str = "ours: top-1 (%)",
                 paper: str = PAPER_TOP1) -> pd.DataFrame:
    """The display of a table with one of our cells per row: the `leading` columns, our
    cell, its protocol and the paper's value."""
    return pd.DataFrame({**leading, ours: [r["cell"] for r in records],
                         "protocol (ours)": [row_protocol([r]) for r in records],
                         paper: [format_paper(ref) for ref in refs]})


def data_frame(records: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The `data` frame of a table from `cell_record` rows (plus table-specific columns)."""
    return pd.DataFrame(records, columns=[*DATA_COLUMNS, *extra])


def row_protocol(records: list[dict[str, Any]]) -> str:
    """The protocols of a display row's cells, once each ('–' when no cell ran)."""
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


def estimates(data: pd.DataFrame, method: str | None = None) -> dict[str, Estimate]:
    """{row: Estimate} of a table's finished cells (one method's, or all)."""
    part = data if method is None else data[data["method"].eq(method)]
    found = {r["row"]: Estimate.of(r) for r in part.to_dict("records")}
    return {row: e for row, e in found.items() if e is not None}


def paper_values(data: pd.DataFrame, method: str | None = None) -> dict[str, float]:
    """{row: paper top-1} of a table (NaN where the paper has no value)."""
    part = data if method is None else data[data["method"].eq(method)]
    return dict(zip(part["row"], part["paper_top1"], strict=True))


def floor_text(floor: Estimate | None) -> str:
    """The floor as a verdict names it."""
    return f"random-init {floor.mean:.1f}" if floor else "random-init unknown: 0"


def random_init_cell(cells: pd.DataFrame) -> dict | None:
    """The random-init run's cell (its own run, no training), or None."""
    found = cells[cells["method"].isin(untrained_names())]
    return found.iloc[0].to_dict() if len(found) else None


def untrained_cell(runs: pd.DataFrame, metric: str) -> dict | None:
    """Every trained trial's epoch-0 evaluation (baseline/*) pooled into one cell: n counts
    trials, not seeds."""
    has_value = runs[BASELINE_COLUMN[metric]].notna() & ~runs["method"].isin(untrained_names())
    # the trials' own protocol numbers measure the trained encoder: not this cell's
    frame = runs[has_value].drop(columns=list(PROTOCOL_COLUMN.values()), errors="ignore")
    frame[METRIC_COLUMN[metric]] = frame[BASELINE_COLUMN[metric]]
    frame = frame.assign(status="FINISHED", collapsed=math.nan, ablation="untrained",
                         ablation_value="epoch 0", method="untrained",
                         seed=pd.array([pd.NA] * len(frame), dtype="Int64"))
    cells = aggregate(frame, metric)
    return cells.iloc[0].to_dict() if len(cells) else None


# --- Fig. 3: the *drop* of top-1 from a reference row (largest batch, full recipe) is what
# compares across datasets; is BYOL's the smaller one (at batch 64 the paper's is not)?

DROP_COLUMNS = ("drop", "drop_from", "paper_drop")

CellLookup = Callable[[str, str], dict[str, Any] | None]  # (row, method) -> cell or None


def _format_drop(record: dict[str, Any]) -> str:
    if record["row"] == record["drop_from"]:
        return "0 (reference)"
    if not math.isnan(record["drop"]):
        return f"{record['drop']:.1f}" + ("" if record["comparable"] else f" [{NOT_PAPER}]")
    if record["status"] != "ok":
        return record["cell"] if record["status"] != "pending" else "not finished"
    return "no reference cell"


def _format_paper_drop(record: dict[str, Any], paper_from: str | None) -> str:
    if math.isnan(record["paper_top1"]):
        return NOT_IN_PAPER
    if record["row"] == paper_from:
        return "0 (reference)"
    return f"{record['paper_drop']:.1f}" if not math.isnan(record["paper_drop"]) else "–"


def drop_frames(axis: str, rows: list[tuple[str, str]], lookup: CellLookup,
                refs: dict[tuple[str, str], Reference], ours_from: dict[str, str | None],
                paper_from: str | None, methods: tuple[str, ...] = METHODS,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A drop table's `data` and `display`. Per (row, label) of `rows` and method, a
    `cell_record` with its drop from the method's reference row: `ours_from[method]` for our
    cells, `paper_from` for the paper's (NaN when either value is missing: a drop is never
    computed from a missing cell). `display` shows per row ours (top-1, drop) for each of
    `methods` (`Inputs.methods`), the protocol of those cells, then the paper's top-1 and drop
    (none without `refs`); `data` has the common CSV columns plus drop, drop_from and
    paper_drop."""
    records = []
    for method in methods:
        base = lookup(ours_from[method], method) if ours_from.get(method) else None
        base_mean = base["mean"] if base and base["status"] == "ok" else math.nan
        paper_base = refs.get((paper_from, method)) if paper_from else None
        for row, row_label in rows:
            ref = refs.get((row, method))
            record = cell_record(row, row_label, method, lookup(row, method), ref)
            record["drop"] = round(base_mean - record["mean"], 6)
            record["drop_from"] = ours_from.get(method) or ""
            record["paper_drop"] = (round(paper_base.top1 - ref.top1, 6) if paper_base and ref
                                    else math.nan)
            records.append(record)
    by_key = {(r["row"], r["method"]): r for r in records}
    columns: dict[str, list[str]] = {axis: [label for _, label in rows]}
    for method in methods:
        columns[f"{label(method)} ours (%)"] = [by_key[(row, method)]["cell"] for row, _ in rows]
        columns[f"{label(method)} drop (ours)"] = [_format_drop(by_key[(row, method)])
                                                   for row, _ in rows]
    columns["protocol (ours)"] = [row_protocol([by_key[(row, m)] for m in methods])
                                  for row, _ in rows]
    for method in METHODS if refs else ():
        columns[f"{label(method)} {PAPER_TOP1}"] = [format_paper(refs.get((row, method)))
                                                 for row, _ in rows]
        columns[f"{label(method)} drop (paper)"] = [
            _format_paper_drop(by_key[(row, method)], paper_from) for row, _ in rows]
    return data_frame(records, DROP_COLUMNS), pd.DataFrame(columns)


def _drop_terms(data: pd.DataFrame, method: str, row: str) -> list[tuple[float, Estimate]]:
    """A method's drop at `row` as contrast terms (+reference cell, −this cell); [] when
    either cell did not finish."""
    part = data[data["method"].eq(method)].set_index("row")
    if row not in part.index or part.at[row, "drop_from"] not in part.index:
        return []
    here = Estimate.of(part.loc[row].to_dict())
    base = Estimate.of(part.loc[part.at[row, "drop_from"]].to_dict())
    return [(1.0, base), (-1.0, here)] if here and base else []


def drops_apart(data: pd.DataFrame, simclr_row: str, byol_row: str,
                noise: Noise) -> Difference | None:
    """SimCLR's drop at one row minus BYOL's at another (positive: BYOL loses less), from the
    four cells behind the two drops; None when one of them did not finish."""
    simclr, byol = _drop_terms(data, "simclr", simclr_row), _drop_terms(data, "byol", byol_row)
    if not simclr or not byol:
        return None
    return contrast([*simclr, *((-c, e) for c, e in byol)], noise)


def byol_loses_less(data: pd.DataFrame, what: str, noise: Noise) -> Check:
    """Does BYOL lose less than SimCLR where the paper's BYOL does (and more where the
    paper's does more)? Rows the paper lacks take its general claim: BYOL loses less. Each
    row is ✓/✗/≈ by its difference of drops; the check by the majority of decided rows."""
    paper = {m: paper_values(data, m) for m in METHODS}
    paper_drop = {m: dict(zip(data.loc[data["method"].eq(m), "row"],
                              data.loc[data["method"].eq(m), "paper_drop"], strict=True))
                  for m in METHODS}
    outcomes = []
    for row in dict.fromkeys(data["row"]):
        if row in set(data["drop_from"]):
            continue
        diff = drops_apart(data, row, row, noise)
        if diff is None:
            continue
        b, s = paper_drop["byol"].get(row, math.nan), paper_drop["simclr"].get(row, math.nan)
        known_paper = not (math.isnan(b) or math.isnan(s)) and not math.isnan(
            paper["byol"].get(row, math.nan))
        sign = -1.0 if known_paper and b > s else 1.0
        outcomes.append(Difference(sign * diff.value, diff.se).outcome)
    detail = f"BYOL's drop smaller than SimCLR's where the paper's is, over the {what}"
    if not outcomes:
        return Check(NO_RUNS, detail)
    return Check(majority(outcomes), f"{detail}: {tally(outcomes)} of {len(outcomes)} rows")


def drop_checks(data: pd.DataFrame, what: str, rows_word: str, noise: Noise) -> list[Check]:
    """Fig. 3a's and 3b's questions: BYOL loses less than SimCLR, and each method's rows are
    ordered as the paper's."""
    checks = [byol_loses_less(data, what, noise)]
    for method in METHODS:
        checks.append(order_check(estimates(data, method), paper_values(data, method),
                                  f"{label(method)} {rows_word}", noise))
    return checks
