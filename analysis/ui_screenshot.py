"""A picture of a sweep's trials compared in the MLflow UI, taken in a headless Chromium.

Starts `mlflow server` on 127.0.0.1 over a tracking store (e.g. the ./mlflow.db `make demo`
writes), opens an experiment's trials (sorted by a metric, so the UI lists them flat rather
than folded under their sweep's parent run) in the UI's chart view, arranges the charts as a
user would (a few bar charts of the results, a few learning curves; the UI keeps that layout
in the browser's localStorage, set here over Chromium's DevTools protocol), closes the
assistant pane and saves the page as a PNG (README: docs/mlflow-ui.png).

    apt-get install -y chromium   # Debian's package
    .venv/bin/python analysis/ui_screenshot.py --tracking-uri sqlite:///mlflow.db \
        --experiment ema_decay/cpu-mini --out docs/mlflow-ui.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devtools import HeadlessChromium
from PIL import Image

from byol_ray.runtime.tracking.ui import runs_page

WIDTH, HEIGHT = 1600, 1040
MAX_BYTES = 300_000  # the README's picture stays small
CHARTS = ("bar:eval/few_label_knn_top1,bar:eval/knn_top1,bar:eval/linear_top1,"
          "line:eval/few_label_knn_top1,line:train/loss,line:train/tau")
# The MLflow UI's own localStorage keys (MLflow 3.17's and 3.18's JavaScript bundles)
PAGE_STATE_KEY = 'MLflowLocalStorage-1.1-ExperimentPage-["{experiment_id}"]-ReactComponentState'
CHART_SECTION = "trials compared"
ASSISTANT_CLOSED = {"mlflow.assistant.panelOpen_v1": "false",
                    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}


def main(argv: list[str] | None = None) -> int:
    """Serve the store, arrange the experiment's trial charts, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="ema_decay/cpu-mini")
    parser.add_argument("--filter", default="tags.role = 'trial'",
                        help="the runs' search filter (default: a sweep's trials)")
    parser.add_argument("--sort", default="eval/few_label_knn_top1",
                        help="the metric the runs are listed by, best first")
    parser.add_argument("--charts", default=CHARTS, type=_chart_specs,
                        help="comma-separated bar:METRIC (its last value per run) or "
                             "line:METRIC (its history) charts, in order")
    parser.add_argument("--out", default="docs/mlflow-ui.png")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("ui_screenshot: no chromium on PATH (apt-get install -y chromium)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", args.tracking_uri, "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(f"{base}/health")
        experiment_id = _experiment_id(base, args.experiment)
        names = _run_names(base, experiment_id, args.filter)
        if not names:
            sys.exit(f"ui_screenshot: no run of {args.experiment!r} matches {args.filter!r}")
        query = urllib.parse.urlencode(
            {"searchFilter": args.filter, "orderByKey": f"metrics.`{args.sort}`",
             "orderByAsc": "false", "compareRunsMode": "CHART"},
            quote_via=urllib.parse.quote)
        url = f"{runs_page(base, experiment_id)}&{query}"  # the runs table, model-training view
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile, \
                HeadlessChromium(browser, profile, WIDTH, HEIGHT) as page:
            _arrange_charts(page, url, PAGE_STATE_KEY.format(experiment_id=experiment_id),
                            args.charts, names)
            page.screenshot(out)
        _shrink(out)
        print(f"{url} -> {out} ({out.stat().st_size // 1000} KB)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


def _chart_specs(text: str) -> list[tuple[str, str]]:
    """`bar:M1,line:M2` as [("BAR", "M1"), ("LINE", "M2")]; anything else exits 2."""
    specs = []
    for item in text.split(","):
        kind, _, metric = item.strip().partition(":")
        if kind not in ("bar", "line") or not metric:
            raise argparse.ArgumentTypeError(f"{item!r} is not bar:METRIC or line:METRIC")
        specs.append((kind.upper(), metric))
    return specs


def _arrange_charts(page: HeadlessChromium, url: str, state_key: str,
                    charts: list[tuple[str, str]], run_names: list[str]) -> None:
    """Open `url` once so the UI writes its default state; on a page of the same origin that
    runs no UI (/health), replace that state's charts by `charts` and close the assistant
    pane; open `url` again and wait until every chart is drawn and every run listed (not
    folded under a parent)."""
    drawn = "document.querySelectorAll('.js-plotly-plot').length"
    page.navigate(url)
    page.wait_for(f"{drawn} > 0")  # the runs loaded, the default charts made and saved
    page.navigate(url.split("#")[0] + "health")
    page.wait_for("document.readyState === 'complete' && location.pathname === '/health'")
    state = json.loads(page.evaluate(f"localStorage.getItem({json.dumps(state_key)})"))
    state.update(_chart_layout(state, charts))
    stored = {state_key: json.dumps(state), **ASSISTANT_CLOSED}
    page.evaluate(f"Object.entries({json.dumps(stored)})"
                  ".forEach(([key, value]) => localStorage.setItem(key, value))")
    page.navigate(url)
    shown = " && ".join(f"document.body.innerText.includes({json.dumps(text)})"
                        for text in [CHART_SECTION, *run_names])
    page.wait_for(f"{drawn} >= {len(charts)} && {shown}")
    page.evaluate("document.head.insertAdjacentHTML('beforeend', "
                  "'<style>.modebar-container { display: none !important }</style>')")
    time.sleep(3)  # plotly's transitions


def _chart_layout(state: dict[str, Any], charts: list[tuple[str, str]]) -> dict[str, Any]:
    """The UI state's `compareRunCharts` and `compareRunSections`: `charts` in one section, the
    generated ones (a chart per metric, grouped by prefix) deleted."""
    section = {"uuid": "byol-ray-trials", "name": CHART_SECTION, "display": True,
               "isReordered": True, "deleted": False, "isGenerated": False}
    generated = {(c["type"], c.get("metricKey")): c for c in state.get("compareRunCharts") or []}
    line_defaults = next((c for c in generated.values() if c["type"] == "LINE"), {})
    cards = []
    for index, (kind, metric) in enumerate(charts):
        card = dict(line_defaults) if kind == "LINE" else {}
        card.update(generated.get((kind, metric), {}))
        card.update({"uuid": f"byol-ray-chart-{index}", "type": kind, "metricKey": metric,
                     "displayName": metric, "metricSectionId": section["uuid"],
                     "runsCountToCompare": 10, "deleted": False, "isGenerated": False})
        cards.append(card)
    old_sections = [dict(s, deleted=True) for s in state.get("compareRunSections") or []]
    return {"compareRunCharts": cards, "compareRunSections": [section, *old_sections],
            "isAccordionReordered": True}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout_s: float = 600) -> None:
    """Until the server answers `url`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _experiment_id(base: str, name: str) -> str:
    """The id of the experiment `name` (MLflow's REST API)."""
    query = urllib.parse.urlencode({"experiment_name": name})
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}") as r:
        return json.load(r)["experiment"]["experiment_id"]


def _run_names(base: str, experiment_id: str, search_filter: str) -> list[str]:
    """The names of the runs the UI should list (MLflow's REST API; up to 100, one page)."""
    body = json.dumps({"experiment_ids": [experiment_id], "filter": search_filter,
                       "max_results": 100}).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as r:
        return [run["info"]["run_name"] for run in json.load(r).get("runs", [])]


def _shrink(png: Path) -> None:
    """Fewer colours until the file is under MAX_BYTES (a UI screenshot has few anyway)."""
    image = Image.open(png).convert("RGB")
    for colours in (256, 128, 64):
        image.quantize(colours).save(png, optimize=True)
        if png.stat().st_size < MAX_BYTES:
            return


if __name__ == "__main__":
    sys.exit(main())
