"""Fixtures and hooks every test may use: the CLI run in-process, CI's rule on skips.

`cli` runs `byol-ray ARGS` as `byol_ray.cli.main.main(argv)` in the test's own process (what
the console script calls), for commands that must stop before any Ray starts: a fresh
`python -m byol_ray.cli` spends 10-15 s importing torch, Ray and MLflow before it says a
word. One test (tests/test_cli.py) keeps the real entry point as a subprocess. `script` runs
a script file (sweeps/NAME.py, as `python sweeps/NAME.py ARGS`) the same way.

In CI (CI=true, as .ci/run sets it) a skipped test fails instead, unless it needs a CUDA
device: CI installs every extra and program the suite uses, so a skip there means a check
that silently stopped running (the contender tests, issue 28).
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# The only reason a test may skip in CI: the machine has no CUDA device.
CI_ALLOWED_SKIP = "CUDA"


@dataclass
class CliResult:
    """What `byol-ray ARGS` returned and printed (the shape of subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def _in_process(call: Callable[[], int | None], capsys) -> CliResult:
    """Run a command's entry point here, its exit status and console captured; no Ray may
    have been started by it."""
    capsys.readouterr()
    try:
        code = call()
    except SystemExit as leaving:  # a script's `raise SystemExit(main())`, argparse's errors
        code = leaving.code
    out = capsys.readouterr()
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "the command started Ray in-process"
    return CliResult(code if isinstance(code, int) else int(code is not None), out.out, out.err)


@pytest.fixture
def cli(capsys, monkeypatch) -> Callable[..., CliResult]:
    """`byol-ray ARGS` in this process (cwd `cwd`, `env` added to the environment), its
    console captured; asserts afterwards that no Ray was started by it."""
    from byol_ray.cli.main import main

    def run(*args: str, cwd: Path | str | None = None,
            env: dict[str, str] | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return _in_process(lambda: main(list(args)), capsys)

    return run


@pytest.fixture
def script(capsys, monkeypatch) -> Callable[..., CliResult]:
    """`python PATH ARGS` (a script such as sweeps/ema_decay.py) in this process, run as
    `__main__` with that argv, its console captured; no Ray may be started by it."""
    def run(path: Path | str, *args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        return _in_process(lambda: runpy.run_path(str(path), run_name="__main__"), capsys)

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a skip (but a CUDA one) is a failure that names what was missing."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if CI_ALLOWED_SKIP not in reason:
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, which installs everything the suite needs "
                           f"(.ci/run, make test): {reason}")
