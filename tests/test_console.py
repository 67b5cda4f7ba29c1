"""The console a researcher reads: byol-ray's own lines by default, Ray's and the libraries'
logs only with --verbose (byol_ray/runtime/console.py)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from local_servers import kill_session, paused_pid
from mlflow.tracking import MlflowClient
from test_ray_errors import RAYLET_NOTICE

from byol_ray.runtime import console
from byol_ray.runtime.pause_points import PAUSE_ENV

# Lines of Ray, Ray Train / Tune and MLflow that a quiet console never shows.
INTERNAL = ("PYTHON worker processes have been started", "Reporting training result",
            "TrainingReport(", "token", "tensorboard", "Trial status", "╭", "pid=",
            "Started a local Ray instance", "INFO mlflow", "Setting up process group")


def train(tmp_path, *extra: str, address: str | None = None) -> str:
    """The console of a 2-epoch cpu-mini `byol-ray train` (stdout and stderr together), on a
    cluster it starts or, given `address`, one it joins."""
    proc = subprocess.run(
        [sys.executable, "-m", "byol_ray.cli", *extra, "train", "--preset", "cpu-mini",
         "--set", "train.epochs=2", "--set", "eval.eval_every=0",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", str(tmp_path / "ray"), *(["--address", address] if address else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "BYOL_RAY_LOGS": str(tmp_path / "logs")})
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two runs, the first starting its own Ray cluster
def test_the_default_console_holds_our_lines_only_and_verbose_brings_rays_back(tmp_path,
                                                                              ray_address):
    """The quiet run starts its own cluster (its first line says so); the verbose one joins
    the session's: Ray's forwarding of the workers' lines does not depend on who started it."""
    quiet = train(tmp_path)
    shown = [p for p in INTERNAL if p.lower() in quiet.lower()]
    assert not shown, f"{shown} in:\n{quiet}"
    assert "[byol-ray] epoch 2/2" in quiet and "byol after 2 epochs" in quiet, quiet
    first = quiet.splitlines()[0]
    assert first.startswith("[byol-ray] started a local Ray cluster at ") and "--verbose" in first
    log = Path(re.search(r"libraries' logs: (\S+), the workers' in ", first)[1])
    assert log.parent == tmp_path / "logs", first
    # what the console left out is in the file it names
    assert "Started a local Ray instance" in log.read_text()

    loud = train(tmp_path, "--verbose", address=ray_address)
    assert "Reporting training result" in loud and "pid=" in loud, loud[-4000:]
    assert "[byol-ray] epoch 2/2" in loud


def test_a_command_chooses_its_console_and_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    with console.chosen(verbose=False):
        assert console.is_quiet()
    assert console.VERBOSE_ENV not in os.environ and not console.is_quiet()
    monkeypatch.setenv(console.VERBOSE_ENV, "1")  # the environment's choice outlasts no flag
    with console.chosen(verbose=False):
        assert not console.is_quiet()
    assert os.environ[console.VERBOSE_ENV] == "1"


def test_the_workers_output_filter_keeps_our_lines_and_passes_what_it_cannot_read_to_ray():
    to_ray = []
    ours_only = console._OursOnly(to_ray.append)
    with redirect_stdout(io.StringIO()) as shown:
        ours_only({"lines": ["[byol-ray] epoch 1/2 | loss 1", "Reporting training result 1",
                             "[sweep x] 1/2 done"], "is_err": False, "pid": 7})
        ours_only({"lines": ["(pid=7) INFO something"], "is_err": False, "pid": 7})
    assert shown.getvalue() == "[byol-ray] epoch 1/2 | loss 1\n[sweep x] 1/2 done\n"
    assert to_ray == []
    unknown = {"text": "a batch of another Ray version"}
    ours_only(unknown)  # no error: Ray's own handler prints it
    assert to_ray == [unknown]


def test_a_raylet_notice_becomes_one_line_with_its_cause_and_the_rest_goes_to_ray(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BYOL_RAY_LOGS", str(tmp_path))
    monkeypatch.setattr(console, "_log_file", None)
    to_ray = []
    short = console._ShortNotices(lambda data, ignore_prefix: to_ray.append(data))
    short({"lines": [RAYLET_NOTICE], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    err = capsys.readouterr().err
    assert err.startswith("[byol-ray] Ray: Ray lost a worker (pid 22843, node 192.0.2.2): exit "
                          "SYSTEM_ERROR: Worker unexpectedly exits"), err
    assert err.count("\n") == 1 and "Some common causes" not in err and to_ray == []
    autoscaler = {"lines": ["Resized to 2 CPUs."], "pid": "autoscaler", "is_err": False}
    short(autoscaler, ignore_prefix=False)
    assert to_ray == [autoscaler]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_worker_ray_loses_reaches_the_quiet_console_as_one_line_with_its_cause(tmp_path):
    """The rank-0 Train worker is SIGKILLed after its first epoch (pause point `epoch-end`):
    the run fails with one line naming that worker's pid, and nothing of Ray's advice text.
    The run starts its own Ray cluster: the workers must inherit the pause point's variable
    (a joined cluster's workers have its environment)."""
    marker = tmp_path / "worker-paused"
    proc = subprocess.Popen(
        [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini",
         "--set", "train.epochs=3", "--set", "eval.eval_every=0",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", str(tmp_path / "ray")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        start_new_session=True, env={**os.environ, "BYOL_RAY_LOGS": str(tmp_path / "logs"),
                                     PAUSE_ENV: f"epoch-end:{marker}"})
    try:
        worker = paused_pid(proc, marker, "epoch-end", timeout_s=600)
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            kill_session(proc)
    assert proc.returncode == 1, out[-4000:]
    cause = f"Ray lost a worker (pid {worker}, node "
    assert f"byol-ray: error: the run failed: {cause}" in out, out[-4000:]
    assert "(raylet)" not in out and "Some common causes" not in out, out[-4000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("byol-ray").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"].startswith(cause)
