"""One protocol fit launched for its metrics (no Ray here: the launch picks the form), shared by
fine-tuning's jobs (`jobs.py`) and the one-pass linear protocol (`linear_pass.py`)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from byol_ray.core.config import to_dict
from byol_ray.runtime.launch import form_for, launch
from byol_ray.runtime.session import Loop


def plain_values(job: Any) -> dict[str, Any]:
    """A protocol job dataclass (with a `cfg`) as plain values for Ray: the config as a dict."""
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)} | {
        "cfg": to_dict(job.cfg)}


def launch_fit(loop: Loop, job: Any, name: str, storage: str, in_trial: bool = False
               ) -> dict[str, float]:
    """Run `loop` on the protocol `job` on `scaling.num_workers` workers; its reported metrics.
    `in_trial`: called inside a Tune trial, where one worker runs in the trial's own process
    (no checkpoints: a fit's result is its metrics)."""
    form = form_for(job.cfg, in_trial=in_trial)
    form = "plain" if form == "trial" else form  # reported to the caller, not to Tune
    return launch(loop, plain_values(job), job.cfg, form=form,
                  name=f"{name}-{int(time.time() * 1000)}", storage=storage,
                  keep_checkpoints=False).metrics
