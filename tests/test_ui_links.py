"""The "browse" hints `train` and the sweeps print open the experiment's runs table in the
MLflow UI that pip installs, not its GenAI page ("Send your first trace"): the printed
`mlflow ui` command serves the store, the printed link is opened in a real headless Chromium."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest
from local_servers import MLFLOW_SERVER_ENV, free_ports, kill_session

from byol_ray.cli.main import resolve_config
from byol_ray.cli.sweep import load_grid, summary
from byol_ray.jobs.pretrain.summary import print_run_summary
from byol_ray.jobs.sweep.plan import SweepOptions, plan
from byol_ray.jobs.sweep.run import SweepResult, _attach_child_runs, _open_parent
from byol_ray.runtime.tracking.run import Run
from byol_ray.runtime.tracking.ui import UI_DEFAULT, browse_hint, runs_page

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analysis"))
from devtools import HeadlessChromium  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
HINT = re.compile(r"browse: mlflow ui --backend-store-uri (\S+)\n  then open (\S+)")
GENAI_PAGE = "Send your first trace"  # the GenAI overview MLflow 3.18 opens by default


def test_a_server_store_is_browsed_at_its_own_address():
    uri = "http://mlflow.example:5000/"
    assert browse_hint(uri, "7") == (
        "browse: http://mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning")
    assert runs_page(UI_DEFAULT, "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning")


def _train_run(uri: str) -> str:
    """A finished run as `byol-ray train` records it (no training: its metrics are not read)."""
    cfg = resolve_config("cpu-mini", ["tracking.run_name=ui-link-train-run"])
    run = Run.start(cfg, uri)
    run.end()
    return run.run_id


def _sweep(uri: str) -> SweepResult:
    """An ema_decay sweep's parent and trial runs, as a sweep creates them."""
    grid, options = load_grid("ema_decay"), SweepOptions("cpu-mini")
    trials = plan(grid, options, check_paths=False)
    parent = _open_parent(grid, options, "ui-link-sweep", uri)
    _attach_child_runs(trials, parent, grid, options, "ui-link-sweep")
    return SweepResult("ui-link-sweep", "ema_decay/cpu-mini", parent.run_id, uri, trials, {})


def _wait_until_served(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 600):
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="Debian's chromium is not installed "
                                            "(apt-get install -y chromium)")
def test_the_printed_links_open_the_runs_table(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_id = _train_run(uri)
    print_run_summary(train_id, uri)
    train_hint = HINT.search(capsys.readouterr().out)
    sweep_hint = HINT.search(summary(_sweep(uri)))
    assert train_hint and sweep_hint and train_hint[1] == sweep_hint[1] == uri
    # The printed command, on a free port instead of mlflow ui's default 5000.
    port = free_ports(1)[0]
    log = tmp_path / "ui.log"
    ui = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui",
                           "--backend-store-uri", train_hint[1], "--port", str(port)],
                          cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
                          start_new_session=True, env={**os.environ, **MLFLOW_SERVER_ENV})
    try:
        served = f"http://127.0.0.1:{port}"
        _wait_until_served(f"{served}/health", ui, log)
        with tempfile.TemporaryDirectory() as profile, \
                HeadlessChromium(BROWSER, profile, 1400, 900) as page:
            for hint, shown in ((train_hint, "ui-link-train-run"),
                                (sweep_hint, "ui-link-sweep")):
                assert hint[2].startswith(UI_DEFAULT + "/")
                page.navigate(hint[2].replace(UI_DEFAULT, served))
                # A link that opened the GenAI overview would never list the run: time out.
                page.wait_for(f"document.body.innerText.includes({shown!r})")
                assert GENAI_PAGE not in page.evaluate("document.body.innerText")
    finally:
        ui.terminate()
        with suppress(subprocess.TimeoutExpired):
            ui.wait(timeout=30)
        kill_session(ui)
