"""Console progress of long work: a line per block of steps with the time left, as `train`
prints per epoch, so that a command that runs for minutes (`byol-ray eval`) never sits silent.
Lines go through `console.say`: the quiet console shows them from a Ray worker too."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from byol_ray.runtime.console import say

LINES = 10  # lines per piece of work: a block is a tenth of it (dense.py logs as often)


class Progress:
    """'[byol-ray] LABEL done/total | detail | eta H:MM:SS' after every block of `total / lines`
    steps and after the last; the eta extrapolates the time per step so far."""

    def __init__(self, label: str, total: int, lines: int = LINES):
        self.label, self.total = label, total
        self.every = max(1, math.ceil(total / max(lines, 1)))
        self.started = time.perf_counter()

    def step(self, done: int, detail: str | Callable[[], str] = "") -> None:
        """Step `done` (1-based) finished; `detail` (or what it returns, called only when a
        line is due: e.g. a loss read from the device) joins the line."""
        if done % self.every and done < self.total:
            return
        per_step = (time.perf_counter() - self.started) / max(done, 1)
        text = detail() if callable(detail) else detail
        parts = [f"[byol-ray] {self.label} {done}/{self.total}", *([text] if text else []),
                 f"eta {clock(per_step * max(self.total - done, 0))}"]
        say(" | ".join(parts))


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
