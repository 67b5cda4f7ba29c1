"""End a driver whose Ray cluster is gone with one clear line, instead of Ray's own exit.

When a cluster's processes die (`ray stop --force`, its head machine lost), a driver joined
to it waits Ray's 60 s for the GCS and is then ended from Ray's C++ side with a log line of
Ray's. `exit_if_cluster_lost` watches the GCS port from a thread: unreachable for
`LOST_AFTER_S` in a row, it prints one line saying what happened and what to do, then ends
the process with status 1. A GCS back within that time (GCS fault tolerance) is not lost.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import ray

LOST_AFTER_S = 15.0  # well inside Ray's own 60 s wait (gcs_rpc_server_reconnect_timeout_s)
CHECK_EVERY_S = 1.0


def gcs_reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts connections at the GCS address (host:port)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextmanager
def exit_if_cluster_lost(what_next: str, label: str = "byol-ray") -> Iterator[None]:
    """While inside, end the process (status 1) with `[label] error: lost the Ray cluster
    ...: what_next` once the connected cluster's GCS stays unreachable for LOST_AFTER_S."""
    address = ray.get_runtime_context().gcs_address
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(address, what_next, label, done),
                               name="byol-ray-cluster-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _watch(address: str, what_next: str, label: str, done: threading.Event) -> None:
    lost_since = None
    while not done.wait(CHECK_EVERY_S):
        if gcs_reachable(address):
            lost_since = None
            continue
        lost_since = lost_since or time.monotonic()
        if time.monotonic() - lost_since >= LOST_AFTER_S and not done.is_set():
            _exit_with(f"[{label}] error: lost the Ray cluster (its GCS at {address} has not "
                       f"answered for {LOST_AFTER_S:g} s): {what_next}")


def _exit_with(line: str) -> None:
    """Print `line` as the process's last words and exit 1 at once: the console is closed
    to everything else first (Ray's threads log on), then the line goes to the saved stderr."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    stderr = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.write(stderr, f"{line}\n".encode())
    os._exit(1)
