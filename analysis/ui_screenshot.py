"""A picture of a sweep's trials compared in the MLflow UI, taken in a headless Chromium.

Starts `mlflow server` on 127.0.0.1 over a tracking store (e.g. the ./mlflow.db `make demo`
writes), opens an experiment's runs table and saves it as a PNG (README: docs/mlflow-ui.png).

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

from PIL import Image

WINDOW = "1600,1000"
MAX_BYTES = 300_000  # the README's picture stays small


def main(argv: list[str] | None = None) -> int:
    """Serve the store, screenshot the experiment's runs table, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="ema_decay/cpu-mini")
    parser.add_argument("--filter", default="tags.role = 'trial'",
                        help="the runs table's search filter (default: a sweep's trials)")
    parser.add_argument("--out", default="docs/mlflow-ui.png")
    parser.add_argument("--wait-ms", type=int, default=20000,
                        help="time the page's scripts get to draw the table")
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
        query = urllib.parse.urlencode({"searchFilter": args.filter}, quote_via=urllib.parse.quote)
        url = f"{base}/#/experiments/{experiment_id}/runs?{query}"
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            "--hide-scrollbars", f"--user-data-dir={profile}",
                            f"--window-size={WINDOW}", f"--virtual-time-budget={args.wait_ms}",
                            f"--screenshot={out.resolve()}", url],
                           check=True, capture_output=True, timeout=300)
        _shrink(out)
        print(f"{url} -> {out} ({out.stat().st_size // 1000} KB)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


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


def _shrink(png: Path) -> None:
    """Fewer colours until the file is under MAX_BYTES (a UI screenshot has few anyway)."""
    image = Image.open(png).convert("RGB")
    for colours in (256, 128, 64):
        image.quantize(colours).save(png, optimize=True)
        if png.stat().st_size < MAX_BYTES:
            return


if __name__ == "__main__":
    sys.exit(main())
