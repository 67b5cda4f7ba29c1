"""Named points where a test can stop a process (the driver, a Train worker) to kill it there.

`$BYOL_RAY_PAUSE_AT=NAME:FILE` makes the process that reaches `pause_point(NAME)` write its
PID to FILE and then wait until it is killed: a test watches for FILE and SIGKILLs that PID,
so the kill lands at that point every time, not wherever a sleep happened to end. Unset (the
normal case) a pause point is one environment look-up. Points: "trials-start" (a trial's
child run exists, its params not yet logged, later trials' runs not yet created) and
"parent-closing" (every trial ended, the sweep's parent run not yet FINISHED) on the driver;
"epoch-end" (an epoch logged) in the rank-0 Train worker, whose death Ray then reports.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from byol_ray.runtime.console import say

PAUSE_ENV = "BYOL_RAY_PAUSE_AT"


def pause_point(name: str) -> None:
    """Stop here until killed when $BYOL_RAY_PAUSE_AT names this point (a test hook)."""
    wanted, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted != name or not marker:
        return
    written = Path(f"{marker}.tmp")
    written.write_text(str(os.getpid()))
    written.replace(marker)  # whole or absent: the test reads it as soon as it exists
    say(f"[byol-ray] paused at {name!r} ({PAUSE_ENV}): waiting to be killed")
    while True:
        time.sleep(60)
