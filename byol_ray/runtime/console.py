"""The console policy, in one place: what a byol-ray command shows, and where the rest goes.

Quiet (the default of the command line): the console holds byol-ray's own lines only, those
that begin with a tag of `OUR_TAGS` (progress, per-epoch summaries, results, errors with their
cause). Everything else goes to files: the driver's Python logs (Ray, Ray Tune, MLflow, ...,
Python warnings) to `driver_log()`, the Ray workers' stdout and stderr (Ray Train's "Reporting
training result", pycocotools' AP tables, tracebacks) stay in the Ray session's `logs/` folder,
where Ray writes them anyway; Ray only stops forwarding them to this console. Errors still
reach the user: a failed worker or a lost node raises on the driver, which prints its cause,
and the raylet's notices (a worker died) become one line with the cause (`ray_errors.py`).

Verbose (`--verbose`, or $BYOL_RAY_VERBOSE=1): Ray's and the libraries' own console output.
`connect()` applies the policy around `ray.init`; the command line chooses it (`chosen`).

One piece has no public API: Ray forwards the workers' output to the driver all or nothing
(`ray.init(log_to_driver=...)`), and our per-epoch lines are printed by a Train worker. So the
quiet console wraps Ray's own forwarding handler (`ray._private`) in a filter, and likewise
Ray's printer of the raylet's notices. Should those internals change, that output is shown as
Ray prints it (verbose), never an error.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from byol_ray.core.masking import mask, mask_record
from byol_ray.runtime.ray_errors import notice_in

VERBOSE_ENV = "BYOL_RAY_VERBOSE"  # "1": verbose; also what the CLI sets for child processes
OUR_TAGS = ("[byol-ray]", "[sweep")  # how every console line of ours begins, from any process
# Loggers whose console output moves to the driver's log file (children propagate to them).
LOGGERS = ("", "ray", "mlflow", "alembic")
# Ray Tune's old console reporter, which prints nothing at verbose=0 (the new one prints the
# configuration box and TensorBoard hint at any verbosity); and no "View run ... at" links from
# MLflow's client as a run ends on a server: they open on the UI's GenAI page (MLflow 3.18);
# ours open on the runs table (`tracking.ui`).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# Read by the raylet of a cluster we start: its "N PYTHON worker processes have been started
# ... maximum expected startup concurrency" warning counts against this (default: the CPUs;
# a sweep's trial drivers, Train controllers and workers are far more on a 2-core machine).
LOCAL_RAYLET_ENV = {"RAY_worker_maximum_startup_concurrency": "64"}
# The name under which `ray.init` registers its forwarding of the workers' output (Ray 2.x).
RAY_FORWARDER = "ray_print_logs"

_log_file: Path | None = None


@contextmanager
def chosen(verbose: bool) -> Iterator[None]:
    """The console of one command (the CLI's --verbose; $BYOL_RAY_VERBOSE=1 is verbose too),
    for this process and the processes it starts; as it was after the command (a command
    called in-process, e.g. by a test, leaves no quiet console behind)."""
    before = os.environ.get(VERBOSE_ENV)
    os.environ[VERBOSE_ENV] = "1" if verbose or before == "1" else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = before


def is_quiet() -> bool:
    """Whether the console holds our lines only: unless verbose was chosen (a library caller
    that chose nothing keeps Ray's console as it is)."""
    return os.environ.get(VERBOSE_ENV) == "0"


def driver_log() -> Path:
    """This process's log file of Ray's and the libraries' logs (quiet console)."""
    global _log_file
    if _log_file is None:
        folder = Path(os.environ.get("BYOL_RAY_LOGS", "~/.cache/byol-ray/logs")).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        _log_file = folder / f"driver-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return _log_file


def quiet_driver() -> None:
    """Quiet console: move the console handlers of Python's loggers to `driver_log()` (again
    for loggers configured since, e.g. MLflow's on import), Python warnings too, and silence
    Tune's reporter. Idempotent; nothing when verbose."""
    if not is_quiet():
        return
    os.environ.update(QUIET_ENV)
    logging.captureWarnings(True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if _is_console(handler):
                logger.removeHandler(handler)
        if not any(getattr(h, "baseFilename", None) == str(driver_log())
                   for h in logger.handlers):
            handler = logging.FileHandler(driver_log())
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handler.addFilter(mask_record)  # no URI's password in the log file
            logger.addHandler(handler)
        if logger.level in (logging.NOTSET, logging.WARNING) and name:
            logger.setLevel(logging.INFO)


def _is_console(handler: logging.Handler) -> bool:
    """A handler writing to the terminal (not a file, not pytest's capture)."""
    return (isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and not type(handler).__module__.startswith("_pytest"))


def before_ray_init(local: bool) -> None:
    """Quiet console: `quiet_driver()`, and for a cluster `ray.init` starts here (`local`) the
    raylet's settings (read from the environment it inherits)."""
    if not is_quiet():
        return
    quiet_driver()
    if local:
        for key, value in LOCAL_RAYLET_ENV.items():
            os.environ.setdefault(key, value)


def after_ray_init(context: object, started_here: bool) -> None:
    """Quiet console: forward only our lines of the Ray workers' output, without Ray's
    `(Actor pid=...)` prefix, and say in one line which cluster this is and where the rest
    goes. `context`: what `ray.init` returned (its public `address_info`)."""
    if not is_quiet():
        return
    quiet_driver()  # for loggers configured since (Ray's own, on init)
    info = getattr(context, "address_info", None)
    info = info if isinstance(info, Mapping) else {}
    address = info.get("gcs_address") or info.get("address") or "?"
    cluster = (f"started a local Ray cluster at {address}" if started_here
               else f"joined the Ray cluster at {address}")
    session = info.get("session_dir")
    workers = f"{session}/logs" if session else "the Ray session's logs folder"
    _shorten_raylet_notices()
    if _forward_ours_only():
        rest = f"the workers' in {workers} (--verbose shows them here)"
    else:
        rest = f"the workers' output is shown as Ray prints it (also in {workers})"
    say(f"[byol-ray] {cluster}; Ray's and libraries' logs: {driver_log()}, {rest}")


def _forward_ours_only() -> bool:
    """Wrap Ray's forwarding of the workers' output in `_OursOnly`; False (Ray's forwarding
    left as it is) where that internal is not what this was written against."""
    try:
        from ray._private import worker as ray_worker

        dispatcher = ray_worker.global_worker_stdstream_dispatcher
        handlers = list(dispatcher.handlers)
        forwarders = [handler for name, handler in handlers if name == RAY_FORWARDER]
        if len(forwarders) != 1 or not callable(forwarders[0]):
            return False
        if isinstance(forwarders[0], _OursOnly):
            return True
        # one assignment: Ray's emit() sees either the old list or the new one
        dispatcher.handlers = [(name, _OursOnly(handler) if name == RAY_FORWARDER else handler)
                               for name, handler in handlers]
        return True
    except Exception:
        return False


def _shorten_raylet_notices() -> None:
    """Wrap Ray's printer of the raylet's notices to the driver (`ray._private`: a worker died,
    a node ran out of memory) in `_ShortNotices`; nothing where that internal is not there."""
    try:
        from ray._private import worker as ray_worker

        if not isinstance(ray_worker.print_to_stdstream, _ShortNotices):
            ray_worker.print_to_stdstream = _ShortNotices(ray_worker.print_to_stdstream)
    except Exception:
        pass


class _ShortNotices:
    """Each raylet notice as one line of ours with its cause (`ray_errors.notice_in`), the
    whole notice in the driver's log; anything else, or a notice not shaped as expected, to
    Ray's own printer."""

    def __init__(self, ray_printer: Callable[..., None]):
        self.ray_printer = ray_printer

    def __call__(self, data: dict, ignore_prefix: bool = False) -> None:
        try:
            raylet = data.get("pid") == "raylet"
            text = "\n".join(data["lines"]) if raylet else ""
        except Exception:
            raylet = False
        if not raylet:
            self.ray_printer(data, ignore_prefix=ignore_prefix)
            return
        logging.getLogger("ray").warning("(raylet) %s", text)
        say(f"[byol-ray] Ray: {notice_in(text)} (Ray's notice: {driver_log()})", sys.stderr)


class _OursOnly:
    """Ray's forwarding handler, passed only our lines of each batch of a worker's output
    (printed by us, without Ray's prefix). A batch not shaped as expected goes to Ray's own
    handler whole: the console is verbose then, never broken."""

    def __init__(self, ray_handler: Callable[[dict], None]):
        self.ray_handler = ray_handler

    def __call__(self, data: dict) -> None:
        try:
            lines = [line for line in data["lines"] if line.startswith(OUR_TAGS)]
            stream = sys.stderr if data["is_err"] else sys.stdout
        except Exception:
            self.ray_handler(data)
            return
        if lines:
            say("\n".join(lines), stream)


def say(text: str, stream=None) -> None:
    """Console lines, also from inside Ray workers (not print(): Ray Train patches it and would
    show them twice). Each line is tagged `[byol-ray]` unless it carries one of ours, so the
    quiet console keeps it."""
    lines = [line if line.startswith(OUR_TAGS) or not line.strip() else f"[byol-ray] {line}"
             for line in mask(text).splitlines()]
    stream = stream or sys.stdout
    stream.write("\n".join(lines) + "\n")
    stream.flush()
