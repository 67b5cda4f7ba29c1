"""The ablation axes: one canonical spelling per axis value, so that runs and the paper align.

Tags are text written by different sweeps ("1" or "1.0", "beta=1" or "beta=1.0", SimCLR's
own "simclr"); `canonical_value` maps each to the spelling of `reference.csv`.
"""

from __future__ import annotations

import math

NUMERIC_AXES = ("tau_base", "strength")
SWITCH_NAMES = ("pred", "target", "beta")
SIMCLR_SWITCHES = "pred=no,target=no,beta=1"  # what SimCLR is in Table 5b's terms


def _number(value: str) -> str:
    try:
        return f"{float(value):g}"
    except ValueError:
        return value


def parse_switches(value: str) -> tuple[bool, bool, float] | None:
    """'pred=yes,target=no,beta=1' -> (True, False, 1.0); None if it is not that shape."""
    if value == "simclr":
        value = SIMCLR_SWITCHES
    parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    if set(parts) != set(SWITCH_NAMES):
        return None
    flags = {"yes": True, "true": True, "no": False, "false": False}
    try:
        pred, target = flags[parts["pred"].strip().lower()], flags[parts["target"].strip().lower()]
        beta = float(parts["beta"])
    except (KeyError, ValueError):
        return None
    return pred, target, beta


def format_switches(pred: bool, target: bool, beta: float) -> str:
    """The canonical spelling of a Table 5b row."""
    yes = {True: "yes", False: "no"}
    return f"pred={yes[pred]},target={yes[target]},beta={beta:g}"


def canonical_value(ablation: str, value: object) -> str:
    """The axis value as reference.csv spells it (numbers via %g, Table 5b switches)."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    text = text.strip()
    if ablation in NUMERIC_AXES:
        return _number(text)
    if ablation == "batch_size":
        try:
            return str(int(float(text)))
        except ValueError:
            return text
    if ablation == "target_network":
        switches = parse_switches(text)
        return format_switches(*switches) if switches else text
    return text


def numeric(value: str) -> float:
    """An axis value as a number for sorting and plotting (NaN if it is not one)."""
    try:
        return float(value)
    except ValueError:
        return float("nan")
