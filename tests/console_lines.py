"""A child process's console read in the background, so a test waits on real state (a line,
a file, a store) while the process runs, never on a sleep. The default deadline is one a
loaded machine meets (load 10-30 on 2 cores: Ray's start and an epoch of cpu-mini took over
300 s there); a test waiting on it needs a pytest timeout above its waits."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

PATIENCE_S = 900  # how long a wait on a running process's state may take, at most


class Lines:
    """A process's console, read line by line in the background, for waiting on a line."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self.proc = proc
        self.thread.start()

    def wait_for(self, text: str, timeout: float = PATIENCE_S) -> int:
        """The index of the first line holding `text`, once it is there."""
        return self.wait_until(f"{text!r}", lambda: [
            i for i, line in enumerate(self.lines) if text in line], timeout)[0]

    def wait_until(self, what: str, condition: Callable[[], Any],
                   timeout: float = PATIENCE_S) -> Any:
        """What `condition()` returns once it is true (it reads real state: files, a store,
        this console), polled while the process runs."""
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            assert time.monotonic() < deadline and self.proc.poll() is None, (
                f"no {what} in:\n" + "".join(self.lines)[-4000:])
            time.sleep(0.1)
        return found

    def text(self) -> str:
        """The whole console, once the process has ended."""
        self.thread.join(timeout=30)
        return "".join(self.lines)
