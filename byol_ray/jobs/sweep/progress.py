"""A one-line-per-event progress view of a sweep: trials done / running / left."""

from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback

from byol_ray.jobs.pretrain.collapse_watch import STOPPED_METRIC
from byol_ray.learn.collapse_stop import stopped_text
from byol_ray.runtime.ray_errors import cause_in


class ProgressCallback(Callback):
    """Print `[sweep NAME] done/running/left` whenever a trial starts, ends or fails."""

    def __init__(self, name: str, total: int):
        self.name, self.total = name, total
        self.running: set[str] = set()
        self.done = self.failed = 0
        self.started = time.perf_counter()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._say(f"started {_key(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.done += 1
        result = trial.last_result or {}
        scores = "  ".join(f"{label} {result[k]:.1f}" for k, label in (
            ("eval/knn_top1", "kNN"), ("eval/few_label_knn_top1", "few-label kNN"),
            ("eval/linear_top1", "linear")) if k in result)
        collapsed = "  COLLAPSED" if result.get("eval/collapsed") else ""
        if stopped := result.get(STOPPED_METRIC):  # ended early by the collapse monitor
            collapsed = "  COLLAPSED" + stopped_text(int(stopped)).removeprefix("collapsed")
        self._say(f"finished {_key(trial)}  {scores}{collapsed}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.done += 1
        self.failed += 1
        self._say(f"FAILED {_key(trial)}: {_cause(trial)} (recorded in MLflow; the sweep "
                  "goes on)")

    def _say(self, event: str) -> None:
        left = self.total - self.done - len(self.running)
        minutes = (time.perf_counter() - self.started) / 60
        failed = f" ({self.failed} failed)" if self.failed else ""
        print(f"[sweep {self.name}] {self.done}/{self.total} done{failed}, "
              f"{len(self.running)} running, {left} left, {minutes:.1f} min: {event}", flush=True)


def _cause(trial) -> str:
    """The one-line cause of a failed trial, from the error file Tune wrote for it."""
    try:
        return cause_in(Path(trial.error_file).read_text())[:300]
    except (OSError, TypeError):  # no error file (a lost trial): MLflow's failure_reason has it
        return "see its failure_reason in MLflow"


def _key(trial) -> str:
    return trial.config.get("trial", {}).get("key", trial.trial_id)
