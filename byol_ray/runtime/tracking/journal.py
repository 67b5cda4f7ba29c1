"""An ordered, on-disk buffer of records that a background thread delivers one at a time.

Rank 0 writes every epoch's metrics here instead of sending them to the tracking server
itself: `append` returns at once (training never waits on the network), the records survive
a killed worker process in a JSON-lines file, and a thread delivers them in order, retrying
with back-off while the server is away. What is still undelivered when the run ends stays in
the file for `byol-ray sync` (or the next run's start) to deliver. Knows nothing of MLflow:
`deliver` is given.

File format: one JSON object per line; a record `{"seq": n, ...}` or an acknowledgement
`{"ack": n}` (record n delivered). A file whose every record is acknowledged is deleted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from byol_ray.runtime.console import say

JOURNAL_ENV = "BYOL_RAY_JOURNAL"
DEFAULT_JOURNAL = "~/.cache/byol-ray/journal"
MAX_BACKOFF_S = 10.0


def journal_dir(folder: str = "") -> Path:
    """Where journals live: `folder`, else $BYOL_RAY_JOURNAL, else ~/.cache/byol-ray/journal
    (local disk of the machine that writes them)."""
    return Path(folder or os.environ.get(JOURNAL_ENV) or DEFAULT_JOURNAL).expanduser()


def pending_records(path: Path) -> list[dict]:
    """The records of a journal file not yet acknowledged, in order."""
    return _scan(path)[0]


def drain(path: Path, deliver: Callable[[dict], None]) -> int:
    """Deliver a journal's pending records in order, here and now (`byol-ray sync`); stop at
    the first that fails. Returns how many are left; an emptied journal is deleted."""
    pending = pending_records(path)
    for done, record in enumerate(pending):
        try:
            deliver(record)
        except Exception:
            return len(pending) - done
        _append(path, {"ack": record["seq"]})
    path.unlink(missing_ok=True)
    return 0


def _scan(path: Path) -> tuple[list[dict], int]:
    """(records not yet acknowledged, highest sequence number used); a torn last line, from a
    process killed mid-write, is ignored."""
    records, acked = [], -1
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "ack" in entry:
            acked = max(acked, entry["ack"])
        else:
            records.append(entry)
    last = max([acked, *(r["seq"] for r in records)])
    return [r for r in records if r["seq"] > acked], last


def _append(path: Path, entry: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


class Journal:
    """Records appended in order, delivered in order by one background thread."""

    def __init__(self, path: Path, deliver: Callable[[dict], None], label: str):
        self.path, self.deliver, self.label = path, deliver, label
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("a") as f:  # end a line torn by a killed writer (skipped when read)
                f.write("\n")
        self._pending, self._seq = _scan(path)  # what a killed process of this run left
        self.lock = threading.Condition(threading.RLock())  # guards the file and the queue
        self._closing = self._stopped = False
        self._outage_since: float | None = None
        self._thread = threading.Thread(target=self._deliver_forever, daemon=True,
                                        name=f"journal-{path.stem}")
        self._thread.start()

    @property
    def next_seq(self) -> int:
        """The sequence number the next record will get."""
        return self._seq + 1

    def append(self, record: dict) -> None:
        """Buffer one record (in memory and on disk); returns without waiting for delivery."""
        with self.lock:
            self._seq += 1
            entry = {"seq": self._seq, **record}
            _append(self.path, entry)
            self._pending.append(entry)
            self.lock.notify()

    def close(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for every record to be delivered; True if they all were.
        Otherwise stop delivering and say on the console where the rest is kept and how to
        deliver it later."""
        with self.lock:
            self._closing = True
            self.lock.notify()
        self._thread.join(timeout_s)
        with self.lock:
            left = len(self._pending)
            self._stopped = True
            self.lock.notify()
        if left:
            say(f"[byol-ray] {self.label} still unreachable: {left} record(s) kept in "
                f"{self.path}; `byol-ray sync` delivers them (so does the next run's start)")
        return left == 0

    def _deliver_forever(self) -> None:
        backoff = 1.0
        while True:
            with self.lock:
                while not self._pending and not self._closing:
                    self.lock.wait()
                if self._stopped:  # given up: what is left waits for `byol-ray sync`
                    return
                if not self._pending:  # closing, all delivered
                    self.path.unlink(missing_ok=True)
                    return
                record = self._pending[0]
            try:
                self.deliver(record)
            except Exception as error:  # the server is away: keep the record, try again
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    say(f"[byol-ray] {self.label} unreachable ({type(error).__name__}: "
                        f"{str(error)[:200]}); buffering in {self.path} and retrying")
                with self.lock:
                    self.lock.wait(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
                continue
            with self.lock:
                self._pending.pop(0)
                _append(self.path, {"ack": record["seq"]})
            if self._outage_since is not None:
                say(f"[byol-ray] {self.label} back after "
                    f"{time.monotonic() - self._outage_since:.0f} s; delivering the buffer")
                self._outage_since, backoff = None, 1.0
