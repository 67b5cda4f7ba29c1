"""analysis/ui_screenshot.py: the README's MLflow UI picture, taken in a real headless Chromium
over a real `mlflow server`, shows a sweep's trials listed flat and compared in charts."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from PIL import Image

from byol_ray.cli.sweep import load_grid
from byol_ray.jobs.sweep.plan import SweepOptions, plan
from byol_ray.jobs.sweep.run import _attach_child_runs, _open_parent

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("eval/few_label_knn_top1", "eval/knn_top1", "eval/linear_top1", "train/loss",
           "train/tau")


def _finished_sweep(uri: str) -> list[str]:
    """An ema_decay sweep's runs as a sweep creates them, each with a short metric history."""
    grid, options = load_grid("ema_decay"), SweepOptions("cpu-mini", seeds=2)
    trials = plan(grid, options, check_paths=False)
    parent = _open_parent(grid, options, "ui", uri)
    _attach_child_runs(trials, parent, grid, options, "ui")
    client = MlflowClient(uri)
    for rank, t in enumerate(trials):
        client.log_batch(t.run_id, metrics=[Metric(key, 50.0 + rank + step, 0, step)
                                            for key in METRICS for step in (0, 1, 2)])
        client.set_terminated(t.run_id, "FINISHED")
    return [t.key for t in trials]


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_ui_picture_shows_every_trial_and_the_compared_charts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trial_names = _finished_sweep(uri)
    out = tmp_path / "ui.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "ui_screenshot.py"), "--tracking-uri", uri,
         "--experiment", "ema_decay/cpu-mini", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    # The script itself waits until every trial's name and each arranged chart are on the page
    # (a trial folded under its parent run would never show), and fails otherwise.
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(trial_names) == 9 and out.stat().st_size < 300_000
    assert Image.open(out).size == (1600, 1040)


def test_a_bad_chart_spec_stops_the_script_naming_the_option(tmp_path, script):
    done = script(ROOT / "analysis" / "ui_screenshot.py", "--charts", "pie:x",
                  "--out", str(tmp_path / "ui.png"))
    assert done.returncode == 2 and "--charts: 'pie:x' is not bar:METRIC" in done.stderr
