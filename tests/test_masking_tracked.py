"""A tracked run whose settings carry secrets stores and shows none of them (core/masking.py):
a real `mlflow server` reached with a password in its URI (the client sends it as basic auth),
a data root with S3 keys and a token, and a tiny `byol-ray train` on a real local Ray cluster.
The run must still be tracked: the real URI reaches the code that connects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from local_servers import MlflowServer
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

SECRETS = ("SECRET-HTTP-7f3a", "SECRET-S3-9b1c", "SECRET-TOKEN-2d8e")


def test_a_tracked_run_keeps_its_secrets_out_of_console_params_tags_artifacts_and_logs(
        tmp_path, ray_address):
    """The run joins the session's Ray cluster, whose logs folder (the workers' output) is
    searched too."""
    logs = tmp_path / "logs"
    with MlflowServer(tmp_path) as server:
        uri = server.uri.replace("http://", f"http://alice:{SECRETS[0]}@")
        root = f"s3://AKIDEXAMPLE:{SECRETS[1]}@bucket/digits?token={SECRETS[2]}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "BYOL_RAY_LOGS": str(logs),
               "BYOL_RAY_JOURNAL": str(tmp_path / "journal")}
        proc = subprocess.run(
            [sys.executable, "-m", "byol_ray.cli", "train", "--preset", "cpu-mini",
             "--set", "train.epochs=1", "--set", "eval.eval_every=1",
             "--set", "train.checkpoint_every=0", "--set", f"data.root={root}",
             "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
             "--address", ray_address],
            capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
        console = proc.stdout + proc.stderr
        assert proc.returncode == 0, console[-4000:]
        assert "alice:***@127.0.0.1" in console  # shown, masked
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("byol-ray")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params["tracking.tracking_uri"] == ""  # the flag, not the config
        assert run.data.params["data.root"] == (
            "s3://AKIDEXAMPLE:***@bucket/digits?token=***")
        stored = {**run.data.params, **run.data.tags}
        artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
        files = [p for p in artifacts.rglob("*") if p.is_file()]
        assert "  root: s3://AKIDEXAMPLE:***@bucket/digits?token=***\n" in (
            artifacts / "config.yaml").read_text()
        server_log = server.log.read_text()
    session = re.search(r"the workers' (?:output is shown as Ray prints it \(also )?in "
                        r"(\S+/logs)", console)
    log_files = [p for p in [*logs.rglob("*"), *(tmp_path / "ray").rglob("*")] if p.is_file()]
    if session:  # Ray's own logs of this session: the workers' output and errors
        log_files += [p for p in Path(session[1]).rglob("*") if p.is_file()]
    assert log_files
    for secret in SECRETS:
        assert secret not in console, secret
        assert not [key for key, value in stored.items() if secret in value], secret
        assert not [p for p in files if secret.encode() in p.read_bytes()], secret
        assert secret not in server_log, secret
        assert not [p for p in log_files if secret.encode() in p.read_bytes()], secret
