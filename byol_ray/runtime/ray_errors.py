"""What a Ray error says, in one line: the worker's own exception, or why Ray lost a worker.

Pure functions over the text Ray gives (an exception's message, a Tune error file, a raylet
notice), so the console, the CLI's last line and MLflow's `failure_reason` agree. Ray's texts
are long (actor ids, node ids, OOM advice); the line keeps the cause, the process and node,
and the worker's log file when Ray names it.
"""

from __future__ import annotations

import re

# `FloatingPointError: loss is nan ...`; not a header such as "WorkerGroupError: Training
# failed due to worker errors:" (its causes follow on the next lines).
_RAISED = re.compile(r"(\w+(?:Error|Exception): [^\n]*[^\s:])[ \t]*$", re.M)
_BECAUSE = re.compile(r"The actor (?:is dead|died) because ([^.\n]+)")
_EXIT_TYPE = re.compile(r"Worker exit type: (\w+)")
_EXIT_DETAIL = re.compile(r"Worker exit detail: (.+?\.)(?=\s|$)")
_PID = re.compile(r"(?:\bpid[=:]\s*|Worker PID: )(\d+)")
_NODE_IP = re.compile(r"(?:node_ip='|\bip: |Worker IP address: )([\d.]+)")
_WORKER_LOG = re.compile(r"log_file_path='([^']+)'")


def root_cause(error: BaseException) -> str:
    """The cause of a failed run, from the exception Ray raised on the driver."""
    return cause_in(f"{type(error).__name__}: {error}")


def cause_in(text: str) -> str:
    """The cause in a Ray error's text: why Ray lost a worker (`worker_death_in`; Ray wraps
    that in an ActorDiedError or a failed health check), else the last `...Error: message` a
    worker raised, else the text itself."""
    death = worker_death_in(text)
    if death:
        return death
    raised = _RAISED.findall(text)
    return raised[-1] if raised else text.strip()


def worker_death_in(text: str) -> str | None:
    """"Ray lost a worker (pid, node): why; exit type: detail; log: file" when `text` tells of
    a worker process or its node that died (killed, out of memory, crashed, node lost)."""
    because, exit_type = _BECAUSE.search(text), _EXIT_TYPE.search(text)
    if not (because or exit_type):
        return None
    pid, node = _PID.search(text), _NODE_IP.search(text)
    where = ", ".join(f"{label} {found[1]}" for label, found in (("pid", pid), ("node", node))
                      if found)
    parts = [because[1]] if because else []
    if exit_type:
        detail = _EXIT_DETAIL.search(text)
        parts.append(f"exit {exit_type[1]}" + (f": {detail[1].rstrip('.')}" if detail else ""))
    log = _WORKER_LOG.search(text)
    if log:
        parts.append(f"its log: {log[1]}")
    return f"Ray lost a worker{f' ({where})' if where else ''}: {'; '.join(parts)}"


def notice_in(text: str) -> str:
    """One line for a notice the raylet sends the driver: a worker's death as above, else the
    notice's first sentence."""
    death = worker_death_in(text)
    if death:
        return death
    first = re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]
    return first[:300]
