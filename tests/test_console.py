"""The console a researcher reads: byol-ray's own lines by default, Ray's and the libraries'
logs only with --verbose (byol_ray/runtime/console.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Lines of Ray, Ray Train / Tune and MLflow that a quiet console never shows.
INTERNAL = ("PYTHON worker processes have been started", "Reporting training result",
            "TrainingReport(", "token", "tensorboard", "Trial status", "╭", "pid=",
            "Started a local Ray instance", "INFO mlflow", "Setting up process group")


def train(tmp_path, *extra: str) -> str:
    """The console of a 2-epoch cpu-mini `byol-ray train` (stdout and stderr together)."""
    proc = subprocess.run(
        [sys.executable, "-m", "byol_ray.cli", *extra, "train", "--preset", "cpu-mini",
         "--set", "train.epochs=2", "--set", "eval.eval_every=0",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--storage", str(tmp_path / "ray")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two runs, each starting its own Ray cluster
def test_the_default_console_holds_our_lines_only_and_verbose_brings_rays_back(tmp_path):
    quiet = train(tmp_path)
    shown = [p for p in INTERNAL if p.lower() in quiet.lower()]
    assert not shown, f"{shown} in:\n{quiet}"
    assert "[byol-ray] epoch 2/2" in quiet and "byol after 2 epochs" in quiet, quiet
    first = quiet.splitlines()[0]
    assert first.startswith("[byol-ray] Ray's and libraries' logs: ") and "--verbose" in first
    log = first.split("logs: ")[1].split(",")[0]
    assert "INFO" in Path(log).read_text()  # what the console left out is in the file it names

    loud = train(tmp_path, "--verbose")
    assert "Reporting training result" in loud and "pid=" in loud, loud[-4000:]
    assert "[byol-ray] epoch 2/2" in loud
