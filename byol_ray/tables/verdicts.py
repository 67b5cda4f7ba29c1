"""Shape comparisons with the paper that know the seeds' noise, summed up in one verdict line.

Our numbers come from other data and budgets than ImageNet at 300 epochs, so the tables do
not ask for equal values: each asks a few questions about the shape (is the best τ in the
middle, does BYOL lose less than SimCLR, ...). Every question rests on a difference of cell
means (a linear contrast), and its answer is

- ✓ when the difference has the paper's sign and exceeds `NOISE_Z` standard errors,
- ✗ when it has the other sign and exceeds them,
- ≈ (within noise) otherwise, and always when every cell it uses ran a single seed,
- ? when the runs it needs are missing.

A cell's standard error is its own std over seeds / √n; a single-seed cell borrows the pooled
std of the cells that ran several seeds (`Noise`), so it is compared only against cells whose
seeds measured the noise, never single seed against single seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

NOISE_Z = 2.0  # a difference counts when larger than twice its standard error
AGREES, DISAGREES, WITHIN_NOISE, NO_RUNS = "✓", "✗", "≈", "?"


@dataclass(frozen=True)
class Estimate:
    """A cell's mean over `n` seeds and their std (NaN for a single seed)."""

    mean: float
    std: float = math.nan
    n: int = 1

    @classmethod
    def of(cls, cell: Mapping[str, Any] | None) -> Estimate | None:
        """The estimate of a finished cell (a `cells.aggregate` row or a table's data row);
        None when it is missing, failed, has no value or may not be compared with the paper
        (`comparable` false: not the paper's protocol, `cells.MINIATURE_PRESETS`)."""
        if (cell is None or cell.get("status") != "ok" or not cell.get("comparable", True)
                or math.isnan(cell["mean"])):
            return None
        return cls(float(cell["mean"]), float(cell["std"]), int(cell["n_seeds"]))


@dataclass(frozen=True)
class Noise:
    """The seeds' noise of one set of runs: the std pooled over every cell that ran at least
    two seeds and did not collapse (NaN when there is none)."""

    std: float = math.nan
    cells: int = 0

    @classmethod
    def of(cls, cells: pd.DataFrame) -> Noise:
        """Pooled within-cell std, Σ(n−1)s² / Σ(n−1), over the finished multi-seed cells."""
        part = cells[cells["status"].eq("ok") & cells["n_seeds"].ge(2)
                     & cells["n_collapsed"].eq(0) & cells["std"].notna()]
        if "comparable" in part:  # the noise of the cells the verdicts compare
            part = part[part["comparable"].astype(bool)]
        dof = (part["n_seeds"] - 1).sum()
        if not dof:
            return cls()
        return cls(float(math.sqrt(((part["n_seeds"] - 1) * part["std"] ** 2).sum() / dof)),
                   len(part))

    def variance_of_mean(self, e: Estimate) -> float:
        """Var of a cell's mean: its own std²/n, or the pooled std² for a single seed."""
        std = e.std if e.n >= 2 and not math.isnan(e.std) else self.std
        return std**2 / e.n

    def describe(self) -> str:
        """'seed noise: pooled std 1.2 points over 9 cells' for captions and reports."""
        if not self.cells:
            return "seed noise: unknown (no cell ran two seeds), so every comparison is ≈"
        return (f"seed noise: pooled std {self.std:.1f} points over {self.cells} multi-seed "
                f"cells; ✓/✗ need a difference above {NOISE_Z:g} standard errors")


@dataclass(frozen=True)
class Difference:
    """A contrast of cell means (Σ cᵢ·meanᵢ + offset) and its standard error (NaN: unknown)."""

    value: float
    se: float

    @property
    def outcome(self) -> str:
        """✓ above the noise in the claimed direction (positive), ✗ below, else ≈."""
        if math.isnan(self.se) or abs(self.value) <= NOISE_Z * self.se:
            return WITHIN_NOISE
        return AGREES if self.value > 0 else DISAGREES

    def text(self) -> str:
        """'+3.1 ± 1.2 SE' or '+3.1, noise unknown'."""
        if math.isnan(self.se):
            return f"{self.value:+.1f}, single seeds: noise unknown"
        return f"{self.value:+.1f} ± {self.se:.1f} SE"


def contrast(terms: Iterable[tuple[float, Estimate]], noise: Noise,
             offset: float = 0.0) -> Difference:
    """Σ cᵢ·meanᵢ + offset with its standard error √Σ cᵢ²·Var(meanᵢ); the error is unknown
    when every cell ran one seed (a single-seed comparison is never decided)."""
    terms = [(c, e) for c, e in terms if c]
    value = sum(c * e.mean for c, e in terms) + offset
    if all(e.n < 2 for _, e in terms):
        return Difference(value, math.nan)
    return Difference(value, math.sqrt(sum(c**2 * noise.variance_of_mean(e) for c, e in terms)))


def above(a: Estimate, b: Estimate, noise: Noise) -> Difference:
    """a − b: positive when a is the higher cell."""
    return contrast([(1.0, a), (-1.0, b)], noise)


def far_below(value: Estimate, best: Estimate, floor: Estimate | None,
              noise: Noise) -> Difference:
    """How far `value` lies under the midpoint between the random-init floor and `best`
    (positive: it keeps less than half of the best's gain over random-init)."""
    terms = [(0.5, best), (-1.0, value)] + ([(0.5, floor)] if floor else [])
    return contrast(terms, noise)


@dataclass(frozen=True)
class Check:
    """One shape question: its outcome (✓, ✗, ≈ or ?) and what it measured."""

    outcome: str
    detail: str


def check(difference: Difference | None, detail: str) -> Check:
    """The answer of one contrast (? when the cells it needs are missing)."""
    if difference is None:
        return Check(NO_RUNS, detail)
    outcome = difference.outcome
    noise = ", within noise" if outcome == WITHIN_NOISE and not math.isnan(difference.se) else ""
    return Check(outcome, f"{detail} ({difference.text()}{noise})")


def all_of(outcomes: list[str]) -> str:
    """Several rows that must all hold: ✗ if one fails beyond noise, ✓ if all hold beyond
    it, ≈ otherwise (? with no rows)."""
    if not outcomes:
        return NO_RUNS
    if DISAGREES in outcomes:
        return DISAGREES
    return AGREES if all(o == AGREES for o in outcomes) else WITHIN_NOISE


def majority(outcomes: list[str]) -> str:
    """Most decided pairs or rows: ✓ when more agree than disagree, ✗ when fewer, ≈ on a tie
    or when none is decided (? with none at all)."""
    if not outcomes:
        return NO_RUNS
    agree, disagree = outcomes.count(AGREES), outcomes.count(DISAGREES)
    if agree == disagree:
        return WITHIN_NOISE
    return AGREES if agree > disagree else DISAGREES


def tally(outcomes: list[str]) -> str:
    """'3 ✓, 1 ✗, 2 ≈' (the counts behind a combined check)."""
    return ", ".join(f"{outcomes.count(o)} {o}" for o in (AGREES, DISAGREES, WITHIN_NOISE)
                     if o in outcomes)


def order_check(ours: Mapping[str, Estimate], paper: Mapping[str, float], what: str,
                noise: Noise) -> Check:
    """Row pairs ordered as in the paper (pairs the paper ties are skipped): each pair is
    ✓/✗/≈ by its difference, the check by the majority of decided pairs."""
    common = sorted(set(ours) & {k for k, v in paper.items() if not math.isnan(v)})
    outcomes = []
    for a, b in combinations(common, 2):
        if paper[a] == paper[b]:
            continue
        sign = 1.0 if paper[a] > paper[b] else -1.0
        diff = above(ours[a], ours[b], noise)
        outcomes.append(Difference(sign * diff.value, diff.se).outcome)
    if not outcomes:
        return Check(NO_RUNS, f"{what} ordered as in the paper")
    return Check(majority(outcomes), f"{what} ordered as in the paper, by pair: "
                                     f"{tally(outcomes)} of {len(outcomes)}")


def verdict_line(checks: list[Check]) -> str:
    """'Verdict: agrees with the paper. ✓ ...; ≈ ...; ? ... (no runs)': the overall word from
    the decided checks (agrees, partly agrees, disagrees), then every question."""
    decided = [c.outcome for c in checks if c.outcome in (AGREES, DISAGREES)]
    noisy = any(c.outcome == WITHIN_NOISE for c in checks)
    if not decided:
        word = ("within noise: no difference the shape rests on exceeds the seeds' noise"
                if noisy else "not enough finished runs to compare the shape with the paper")
    elif all(o == AGREES for o in decided):
        word = "agrees with the paper" + (" where the seeds can tell" if noisy else "")
    elif AGREES in decided:
        word = "partly agrees with the paper"
    else:
        word = "disagrees with the paper" + (" where the seeds can tell" if noisy else "")
    parts = [f"{c.outcome} {c.detail}" + (" (no runs)" if c.outcome == NO_RUNS else "")
             for c in checks]
    return f"Verdict: {word}." + (" " + "; ".join(parts) + "." if parts else "")
