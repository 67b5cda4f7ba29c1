"""MLflow's tracking server over PostgreSQL, as cluster/gpu.yaml's head and KubeRay run it.

Debian's PostgreSQL server, started by the test as the unprivileged `postgres` user in a
temporary folder, with password (scram-sha-256) authentication; the password is only in a
0600 passfile that the MLflow server finds through PGPASSFILE, as on the cluster. No
PostgreSQL installed fails the tests naming the package (`.ci/run` installs it). And
cluster/gpu.yaml's own start-up of PostgreSQL on the head, run here as `ray up` runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow.artifacts
import psycopg
import pytest
import yaml
from local_servers import (
    MlflowServer,
    free_ports,
    pg_bin,
    session_members,
    unprivileged_folder,
)
from mlflow.tracking import MlflowClient

EPOCHS = 2
GPU_YAML = Path(__file__).resolve().parents[2] / "cluster" / "gpu.yaml"


def _command_lines(session: int) -> str:
    """The command lines of every live process of a session, as `ps` shows them to anyone."""
    lines = []
    for pid in session_members(session):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return "\n".join(lines)


def test_postgresql_server_programs_are_installed():
    """Not a skip: the slow tests need them, and `.ci/run` installs them."""
    for name in ("initdb", "postgres", "pg_isready", "createdb"):
        assert Path(pg_bin(name)).is_file(), name


@pytest.mark.slow
@pytest.mark.timeout(1800)  # MLflow's tables over PostgreSQL took 4 min on the loaded machine
def test_a_run_tracked_through_a_postgresql_backed_server_lands_there_and_shows_no_password(
        tmp_path, mlflow_pg, ray_address):
    """`byol-ray train` logs to an `mlflow server` (two workers, the 60 s health check of
    cluster/gpu.yaml) over PostgreSQL: the run ends FINISHED with its params and every epoch's
    metrics, read back through the server and found in PostgreSQL's own tables. The database
    refuses a wrong password, and its password is in none of: the run's params, tags and
    config.yaml, the console of the run, the server's log, the command lines of the server's
    processes. The run joins the session's Ray cluster."""
    pg = mlflow_pg  # this test's database, MLflow's schema made once per session (conftest.py)
    with MlflowServer(tmp_path, pg=pg, workers=2,
                      uvicorn_opts="--timeout-worker-healthcheck 60") as server:
        assert "PGPASSWORD" not in os.environ
        proc = subprocess.run(
            [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini",
             "--set", f"train.epochs={EPOCHS}", "--set", f"eval.eval_every={EPOCHS}",
             "--set", "train.checkpoint_every=0", "--tracking-uri", server.uri,
             "--storage", str(tmp_path / "ray"), "--address", ray_address],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        console = proc.stdout + proc.stderr
        assert proc.returncode == 0, console[-4000:]
        command_lines = _command_lines(server.proc.pid)

        client = MlflowClient(server.uri)
        [run] = client.search_runs([client.get_experiment_by_name("byol-ray").experiment_id])
        run_id = run.info.run_id
        assert run.info.status == "FINISHED", console[-3000:]
        assert run.data.params["method.tau_base"] == "0.97"
        assert run.data.tags["preset"] == "cpu-mini"
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        assert steps == list(range(1, EPOCHS + 1))
        config_yaml = Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="config.yaml", dst_path=str(tmp_path / "artifacts"),
            tracking_uri=server.uri))

        # What MLflow stored is in PostgreSQL (not a sqlite file beside the server).
        assert pg.query("SELECT run_uuid, status FROM runs") == [(run_id, "FINISHED")]
        [(params,)] = pg.query(f"SELECT count(*) FROM params WHERE run_uuid = '{run_id}'")
        assert params == len(run.data.params) > 0
        [(points,)] = pg.query(
            f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}' AND key = 'train/loss'")
        assert points == EPOCHS
        assert not list(tmp_path.glob("*.db"))
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=pg.port, user=pg.user, dbname=pg.database,
                            password="not-the-password", passfile=os.devnull).close()

        assert pg.passfile.stat().st_mode & 0o077 == 0  # libpq ignores a passfile others read
        server_log = server.log.read_text(errors="replace")
        print(server_log[-2000:])  # what a reader of the test's output (or the head's log) sees
    seen = {"params": repr(run.data.params), "tags": repr(run.data.tags),
            "config.yaml": config_yaml.read_text(), "console": console,
            "server log": server_log, "server command lines": command_lines,
            "backend store URI": server.backend}
    for where, text in seen.items():
        assert pg.password not in text, f"the database password is in the {where}"
    assert "mlflow server" in command_lines and "postgresql+psycopg://mlflow@" in command_lines


def _head_postgres_command() -> str:
    """gpu.yaml's head command that starts PostgreSQL and waits until it is ready."""
    commands = yaml.safe_load(GPU_YAML.read_text())["head_start_ray_commands"]
    [command] = [c for c in commands if "initdb" in c]
    return command


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow  # initdb with its fsyncs, twice a start-up (about 2 min on a loaded machine)
def test_the_gpu_heads_postgresql_start_up_runs_unprivileged_and_never_shows_its_password():
    """The head's start-up command, run as `ray up` runs it (bash, an unprivileged user, its
    HOME, ~/byol-ray.env's BYOL_PG_PORT): PostgreSQL initialised with a generated password
    that only the 0600 passfile holds, listening on 127.0.0.1 only, ready (pg_isready) with
    MLflow's database; a wrong password is refused; the command's output and the server's
    logs never show the password; a second `ray up` finds it running and passes again."""
    folder, as_user = unprivileged_folder("byol-ray-head-")
    home, port = folder, free_ports(1)[0]
    store = home / "byol-ray-mlflow"
    env = [f"HOME={home}", f"PATH={os.environ['PATH']}", f"BYOL_PG_PORT={port}", "LC_ALL=C"]
    command = [*as_user, "env", "-i", *env, "bash", "-c", _head_postgres_command()]
    try:
        runs = [subprocess.run(command, cwd=home, capture_output=True, text=True, timeout=300)
                for _ in range(2)]  # the first `ray up`, and the next one
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr + (
                (store / "postgres.log").read_text() if (store / "postgres.log").exists() else "")
        passfile = store / "pgpass"
        assert passfile.stat().st_mode & 0o777 == 0o600
        [line] = passfile.read_text().splitlines()
        host, port_field, database, user, password = line.split(":")
        assert (host, port_field, database, user) == ("127.0.0.1", "*", "*", "mlflow")
        assert len(password) == 48 and not (store / "initdb.pw").exists()

        def connect(host: str = "127.0.0.1", **auth) -> psycopg.Connection:
            return psycopg.connect(host=host, port=port, user="mlflow", dbname="mlflow",
                                   connect_timeout=10, **auth)

        with connect(passfile=str(passfile)) as connection:
            assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert connection.execute("SHOW password_encryption").fetchone() == (
                "scram-sha-256",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(password="not-the-password", passfile=os.devnull).close()
        with pytest.raises(psycopg.OperationalError):  # 127.0.0.1 only
            connect(host="127.0.0.2", passfile=str(passfile)).close()
        shown = "".join(run.stdout + run.stderr for run in runs) + "".join(
            path.read_text(errors="replace") for path in store.glob("*.log"))
        assert password not in shown
        assert password not in _head_postgres_command()
    finally:
        pid = _postmaster_pid(store / "pgdata")
        if pid is not None:  # pg_ctl started it in a session of its own: stop it by its pid
            subprocess.run([*as_user, pg_bin("pg_ctl"), "-D", str(store / "pgdata"), "-m",
                            "fast", "-w", "stop"], capture_output=True, timeout=120)
            with contextlib.suppress(OSError):  # only if the fast shutdown did not end it
                if b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder.parent, ignore_errors=True)
