"""Shape comparisons with the paper, summed up in a one-line verdict under each table.

Our numbers come from other data and budgets than ImageNet at 300 epochs, so the tables do
not ask for equal values: each asks a few yes/no questions about the shape (is the best tau
in the middle, does BYOL lose less than SimCLR, ...). A question without the runs to answer it
is skipped and said to be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Check:
    """One shape question: `ok` is True/False, or None when the runs cannot answer it."""

    ok: bool | None
    detail: str


def verdict_line(checks: list[Check]) -> str:
    """'Verdict: agrees with the paper. ✓ ...; ✗ ...; ? ... (no runs)': the overall word
    (agrees, partly agrees, disagrees, or not enough runs), then every question."""
    answered = [c for c in checks if c.ok is not None]
    if not answered:
        word = "not enough finished runs to compare the shape with the paper"
    elif all(c.ok for c in answered):
        word = "agrees with the paper"
    elif any(c.ok for c in answered):
        word = "partly agrees with the paper"
    else:
        word = "disagrees with the paper"
    parts = [f"{'✓' if c.ok else '✗'} {c.detail}" for c in answered]
    parts += [f"? {c.detail} (no runs)" for c in checks if c.ok is None]
    return f"Verdict: {word}." + (" " + "; ".join(parts) + "." if parts else "")


def known(values: Mapping[str, float]) -> dict[str, float]:
    """The entries that have a number (drops NaN, i.e. missing or failed cells)."""
    return {k: v for k, v in values.items() if v is not None and not math.isnan(v)}


def pairs_in_order(ours: Mapping[str, float], paper: Mapping[str, float]) -> tuple[int, int]:
    """(agreeing, compared) pairs of rows that both rank: a pair agrees when our two values
    are ordered as the paper's (pairs the paper ties are skipped)."""
    common = sorted(set(known(ours)) & set(known(paper)))
    agree = compared = 0
    for a, b in combinations(common, 2):
        paper_sign = math.copysign(1, paper[a] - paper[b]) if paper[a] != paper[b] else 0
        if paper_sign == 0:
            continue
        compared += 1
        agree += (ours[a] - ours[b]) * paper_sign > 0
    return agree, compared


def order_check(ours: Mapping[str, float], paper: Mapping[str, float], what: str) -> Check:
    """Most row pairs ordered as in the paper (None with fewer than one comparable pair)."""
    agree, compared = pairs_in_order(ours, paper)
    if not compared:
        return Check(None, f"{what} ordered as in the paper")
    return Check(agree * 2 > compared, f"{what}: {agree}/{compared} pairs ordered as in the paper")


def far_below(value: float, best: float, floor: float) -> bool:
    """True when `value` keeps less than half of the best's gain over the random-init floor."""
    return value - floor < 0.5 * (best - floor)
