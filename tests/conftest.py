"""Fixtures and hooks every test may use: the CLI run in-process, one PostgreSQL server with
MLflow's schema and one local Ray cluster per session (each xdist worker's own), the order the
modules run in, CI's rule on skips.

`cli` runs `byol-ray ARGS` as `byol_ray.cli.main.main(argv)` in the test's own process (what
the console script calls), for commands that must stop before any Ray starts: a fresh
`python -m byol_ray.cli` spends 10-15 s importing torch, Ray and MLflow before it says a
word. One test (tests/test_cli.py) keeps the real entry point as a subprocess. `script` runs
a script file (sweeps/NAME.py, as `python sweeps/NAME.py ARGS`) the same way.

`mlflow_pg` is a database of a test's own holding MLflow's migrated schema, copied from the
one the session's PostgreSQL server migrated once (`mlflow_postgres`): starting PostgreSQL and
MLflow's migrations over it took minutes per test on the loaded machine.

`ray_joined` makes this process a driver of the session's local Ray cluster (`ray start
--head` on 127.0.0.1, 2 CPUs, its own ports and temp dir, ended by killing its own session:
tests/local_servers.ray_node) for a module's tests that only run jobs on it; a test that kills
a cluster, or needs a fresh one, starts its own. `ray_address` is that cluster's address, for
a `byol-ray` child process to join (`--address`) instead of starting a Ray of its own (10-20 s
each) where what the test checks does not depend on the run owning its cluster.

`make check` and `make test` run the suite on two pytest-xdist workers, a module at a time each
(`-n 2 --dist loadscope`): each worker is a session of its own, with its own PostgreSQL server
and Ray cluster, and a module's fixtures (a joined driver, a two-node cluster) are built once.
The modules with the most slow tests go first (`pytest_collection_modifyitems`), so the long
ones start early and the fast ones fill the end: while one worker trains, the other uses the
time the first spends waiting on Ray, a server or a child process.

In CI (CI=true, as .ci/run sets it) a skipped test fails instead, unless it needs a CUDA
device: CI installs every extra and program the suite uses, so a skip there means a check
that silently stopped running (the contender tests, issue 28).
"""

from __future__ import annotations

import itertools
import os
import runpy
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from local_servers import Postgres

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
    `__main__` with that argv and, as `python` does, its folder first on sys.path; its
    console captured; no Ray may be started by it."""
    def run(path: Path | str, *args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        monkeypatch.syspath_prepend(str(Path(path).parent))
        return _in_process(lambda: runpy.run_path(str(path), run_name="__main__"), capsys)

    return run


@pytest.fixture(scope="session")
def mlflow_postgres(tmp_path_factory) -> Iterator[Postgres]:
    """The session's PostgreSQL server (tests/local_servers.postgres) whose database `mlflow`
    holds MLflow's tables, made by one `mlflow server` start over it; a template only: tests
    take copies (`mlflow_pg`)."""
    from local_servers import MlflowServer, postgres  # imports MLflow: only when needed

    with postgres() as pg:
        with MlflowServer(tmp_path_factory.mktemp("mlflow-schema"), pg=pg):
            pass  # its first start over the empty database ran MLflow's migrations
        yield pg


_DATABASES = itertools.count()


@pytest.fixture
def mlflow_pg(mlflow_postgres) -> Postgres:
    """A database of this test's own on the session's PostgreSQL server, holding MLflow's
    migrated schema and nothing else (same role, password and passfile)."""
    return mlflow_postgres.copy(f"test_{next(_DATABASES)}")


@pytest.fixture(scope="session")
def ray_cluster_of_session():
    """The session's local Ray cluster (the `ray start` process; `.address` its GCS), with the
    settings a cluster byol-ray starts itself has (runtime/cluster.LOCAL_CLUSTER_ENV, and the
    raylet's runtime/console.LOCAL_RAYLET_ENV); started on first use, stopped by killing the
    processes of its own session at the end."""
    from local_servers import ray_node

    from byol_ray.runtime.cluster import LOCAL_CLUSTER_ENV
    from byol_ray.runtime.console import LOCAL_RAYLET_ENV

    env = {**LOCAL_RAYLET_ENV, **os.environ, **LOCAL_CLUSTER_ENV}  # the raylet's: a default
    with ray_node(num_cpus=2, env=env) as head:
        yield head


@pytest.fixture(scope="session")
def ray_address(ray_cluster_of_session) -> str:
    """The session cluster's GCS address, for `byol-ray ... --address` in a child process: it
    joins the running cluster instead of starting one (10-20 s on this machine, minutes under
    load). Only for tests whose checks do not depend on the run owning its cluster (none may
    kill it), nor on the workers inheriting the child's environment: a joined cluster's
    workers have the cluster's (a pause point's variable, MLflow's retry settings, a secret
    to keep out of the run do not reach them)."""
    return ray_cluster_of_session.address


@pytest.fixture(scope="module")
def ray_joined(ray_cluster_of_session):
    """This test process joined to the session's Ray cluster as a driver (a job of its own)
    for a module's tests; it leaves the cluster, which goes on, at the module's end."""
    import ray

    from byol_ray.runtime.cluster import connect

    if ray.is_initialized():  # an earlier module's driver left up: leave that cluster first
        ray.shutdown()
    connect(ray_cluster_of_session.address)
    yield ray_cluster_of_session
    ray.shutdown()


def pytest_configure(config) -> None:
    """Before any worker starts: the Ray token the first local cluster would write
    (~/.ray/auth_token), written once here, so that two workers starting their first clusters
    at the same moment do not each write a different one (the second would lock the first
    worker's cluster out of its own token)."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", default=None):
        return  # an xdist worker (the controller did it), or one process: no race
    from ray._private.authentication.authentication_token_setup import (
        AuthenticationTokenLoader,
        generate_and_save_token,
    )

    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        generate_and_save_token()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most slow tests first, each module's own order kept (a stable sort):
    with `--dist loadscope --no-loadscope-reorder` the xdist workers take whole modules in
    this order, the longest-first rule that keeps neither idle at the end."""
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    slow = Counter(module(item) for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[module(item)])


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
