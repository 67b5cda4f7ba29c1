"""Writes to a run that never wait on the tracking server: buffered in a local journal
(`journal.py`), delivered in order by a background thread, or later by `byol-ray sync`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from byol_ray.core.config import ConfigError
from byol_ray.runtime.tracking.journal import Journal, drain, journal_dir, pending_records
from byol_ray.runtime.tracking.run import Run, failure_reason
from byol_ray.runtime.tracking.store import check_tracking_store

JOURNAL_WAIT_S = 120.0  # how long a finished run waits for an absent server before it leaves
#                         its last records in the journal for `byol-ray sync`
# Logged in the same request as each epoch's metrics: how far the run's metrics have reached.
EPOCH_METRIC = "epoch"


class RunLogger:
    """Writes to one run that never wait on the tracking server: buffered in order, in memory
    and in a local journal (`journal.py`), delivered by a background thread; each epoch
    reaches MLflow exactly once, also after a worker restart re-runs epochs it had logged."""

    def __init__(self, tracking_uri: str, run_id: str, journal: str = "", role: str = "worker"):
        self.uri, self.run_id = tracking_uri, run_id
        path = journal_dir(journal) / f"{run_id}.{role}.jsonl"
        self.journal = Journal(path, _Delivery(), label=f"MLflow at {tracking_uri}")

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """Buffer one epoch's metrics, logged at step `epoch`."""
        self.journal.append({"kind": "epoch", "uri": self.uri, "run_id": self.run_id,
                             "step": epoch, "time_ms": int(time.time() * 1000),
                             "metrics": {k: float(v) for k, v in metrics.items()}})

    def log_weights(self, folder: Path) -> None:
        """Buffer a weights folder (copied into the journal) for the run's `weights/`."""
        with self.journal.lock:
            copy = self.journal.path.with_suffix(f".weights-{self.journal.next_seq}")
            shutil.rmtree(copy, ignore_errors=True)  # left by a process killed mid-copy
            shutil.copytree(folder, copy)
            self.journal.append({"kind": "weights", "uri": self.uri, "run_id": self.run_id,
                                 "folder": str(copy)})

    def set_tags(self, tags: dict[str, str]) -> None:
        """Buffer tags for the run (e.g. an early stop's `collapse_stop`)."""
        self.journal.append({"kind": "tags", "uri": self.uri, "run_id": self.run_id,
                             "tags": {k: str(v) for k, v in tags.items()}})

    def end(self, error: BaseException | str | None = None) -> None:
        """Buffer the run's end: FINISHED, or FAILED with its reason (see `Run.end`)."""
        reason = None if error is None else failure_reason(error)
        self.journal.append({"kind": "end", "uri": self.uri, "run_id": self.run_id,
                             "reason": reason})

    def close(self, timeout_s: float = JOURNAL_WAIT_S) -> bool:
        """Wait (bounded) for delivery; True if everything reached the server."""
        return self.journal.close(timeout_s)


class _Delivery:
    """Delivers journal records to MLflow; an epoch the run already holds is skipped."""

    def __init__(self):
        self.runs: dict[tuple[str, str], Run] = {}  # (uri, run id) -> the run, one client each
        self.through: dict[tuple[str, str], int] = {}  # (uri, run) -> last epoch delivered

    def __call__(self, record: dict) -> None:
        key = record["uri"], record["run_id"]
        run = self.runs.get(key) or self.runs.setdefault(key, Run(*key))
        try:
            if record["kind"] == "end":
                run.end(record["reason"])
                return
            if record["kind"] == "tags":
                run.set_tags(record["tags"])
                return
            if record["kind"] == "weights":  # the same files again after a failed try
                run.log_weights(Path(record["folder"]))
                shutil.rmtree(record["folder"], ignore_errors=True)
                return
            if key not in self.through:  # after a restart, or a failed (maybe landed) request
                # the last epoch delivered (-1: none); MLflow keeps a metric's value at its max step
                self.through[key] = int(run.read().metrics.get(EPOCH_METRIC, -1))
            if record["step"] <= self.through[key]:
                return
            run.log_metrics(record["metrics"] | {EPOCH_METRIC: record["step"]}, record["step"],
                            record["time_ms"])
            self.through[key] = record["step"]
        except Exception:
            self.through.pop(key, None)
            raise


def finish_run(tracking_uri: str, run_id: str, error: BaseException | str | None = None,
               journal: str = "", timeout_s: float = JOURNAL_WAIT_S) -> bool:
    """End the run (see `Run.end`) without failing when the server is away: the end is kept
    in the journal then, after the run's metrics, for `byol-ray sync`. True if delivered."""
    logger = RunLogger(tracking_uri, run_id, journal, role="driver")
    logger.end(error)
    return logger.close(timeout_s)


def sync_journals(journal: str = "", tracking_uri: str | None = None) -> tuple[int, int]:
    """Deliver what runs left in the journal folder (all, or those logging to
    `tracking_uri`): each run's metrics before its end. Returns (records delivered, left)."""
    delivered = left = 0
    paths = sorted(journal_dir(journal).glob("*.jsonl"),
                   key=lambda p: (p.name.split(".")[0], p.name.endswith(".driver.jsonl")))
    deliver, reachable = _Delivery(), {}
    for path in paths:
        pending = pending_records(path)
        uri = pending[0]["uri"] if pending else None
        if not uri or (tracking_uri and uri != tracking_uri):
            continue
        if uri not in reachable:  # one quick check, not MLflow's minutes of retries per record
            try:
                check_tracking_store(uri, attempts=1)
                reachable[uri] = True
            except ConfigError as error:
                print(f"[byol-ray] not delivered: {error}", flush=True)
                reachable[uri] = False
        if not reachable[uri]:
            left += len(pending)
            continue
        remaining = drain(path, deliver)
        delivered, left = delivered + len(pending) - remaining, left + remaining
    if delivered:
        print(f"[byol-ray] delivered {delivered} buffered record(s) from {journal_dir(journal)}"
              f"{'; ' + str(left) + ' still undelivered' if left else ''}", flush=True)
    return delivered, left
