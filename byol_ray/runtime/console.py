"""The console policy, in one place: what a byol-ray command shows, and where the rest goes.

Quiet (the default of the command line): the console holds byol-ray's own lines only, those
that begin with a tag of `OUR_TAGS` (progress, per-epoch summaries, results, errors with their
cause). Everything else goes to files: the driver's Python logs (Ray, Ray Tune, MLflow, ...,
Python warnings) to `driver_log()`, the Ray workers' stdout and stderr (Ray Train's "Reporting
training result", pycocotools' AP tables, tracebacks) stay in the Ray session's `logs/` folder,
where Ray writes them anyway; Ray only stops forwarding them to this console. Errors still
reach the user: a failed worker or a lost node raises on the driver, which prints its cause.

Verbose (`--verbose`, or $BYOL_RAY_VERBOSE=1): Ray's and the libraries' own console output.
`connect()` applies the policy before Ray starts; the command line chooses it (`set_verbose`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

VERBOSE_ENV = "BYOL_RAY_VERBOSE"  # "1": verbose; also what the CLI sets for child processes
OUR_TAGS = ("[byol-ray]", "[sweep")  # how every console line of ours begins, from any process
# Loggers whose console output moves to the driver's log file (children propagate to them).
LOGGERS = ("", "ray", "mlflow", "alembic")
# Ray Tune's old console reporter, which prints nothing at verbose=0 (the new one prints the
# configuration box and TensorBoard hint at any verbosity).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0"}
# Read by the raylet of a cluster we start: its "N PYTHON worker processes have been started
# ... maximum expected startup concurrency" warning counts against this (default: the CPUs;
# a sweep's trial drivers, Train controllers and workers are far more on a 2-core machine).
LOCAL_RAYLET_ENV = {"RAY_worker_maximum_startup_concurrency": "64"}

_log_file: Path | None = None


def set_verbose(verbose: bool) -> None:
    """Choose the console for this process and the processes it starts (the CLI's --verbose)."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"


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


def after_ray_init() -> None:
    """Quiet console: forward only our lines of the Ray workers' output, without Ray's
    `(Actor pid=...)` prefix, and say in one line where the rest is."""
    if not is_quiet():
        return
    quiet_driver()  # for loggers configured since (Ray's own, on init)
    try:  # Ray's dispatcher of the workers' output to this console: internal, so guarded
        from ray._private import worker

        dispatcher = worker.global_worker_stdstream_dispatcher
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("ray_print_logs", _show_ours)
        logs = worker._global_node.get_logs_dir_path()
    except Exception:
        logs = "the Ray session's logs folder"
    say(f"[byol-ray] Ray's and libraries' logs: {driver_log()}, workers' in {logs} "
        "(--verbose shows them here)")


def _show_ours(data: dict) -> None:
    """Print the lines of a worker's output batch that are ours."""
    lines = [line for line in data.get("lines", []) if line.startswith(OUR_TAGS)]
    if lines:
        say("\n".join(lines), sys.stderr if data.get("is_err") else sys.stdout)


def say(text: str, stream=None) -> None:
    """Console lines, also from inside Ray workers (not print(): Ray Train patches it and would
    show them twice). Each line is tagged `[byol-ray]` unless it carries one of ours, so the
    quiet console keeps it."""
    lines = [line if line.startswith(OUR_TAGS) or not line.strip() else f"[byol-ray] {line}"
             for line in text.splitlines()]
    stream = stream or sys.stdout
    stream.write("\n".join(lines) + "\n")
    stream.flush()
