"""A headless Chromium driven over its DevTools protocol, through a pipe (no websocket, no driver).

`chromium --remote-debugging-pipe` reads protocol commands on its fd 3 and writes replies and
events on its fd 4, each a JSON object ended by a NUL byte
(https://chromedevtools.github.io/devtools-protocol/). That is enough to set a page's
localStorage before its scripts read it, wait for what they draw, and take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any


class DevToolsError(RuntimeError):
    """Chromium answered a command with an error, or a page never reached the awaited state."""


class HeadlessChromium:
    """One headless Chromium with one page (tab) attached; use as a context manager."""

    def __init__(self, browser: str, profile_dir: str | Path, width: int, height: int) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds_3_and_4() -> None:  # in the child, before exec: its fd 3 and fd 4
            spare_r, spare_w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(spare_r, 3, inheritable=True)
            os.dup2(spare_w, 4, inheritable=True)

        self._process = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=wire_fds_3_and_4, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        try:
            target = self._command("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._command("Target.attachToTarget",
                                          {"targetId": target, "flatten": True})["sessionId"]
            self.command("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one protocol command to the page and return its result."""
        return self._command(method, params, self._session)

    def navigate(self, url: str) -> None:
        """Open `url` in the page (returns once the navigation started; see `wait_for`)."""
        self.command("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        reply = self.command("Runtime.evaluate",
                             {"expression": expression, "returnByValue": True,
                              "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise DevToolsError(f"{expression!r}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 120) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except DevToolsError:  # the page is between documents
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise DevToolsError(f"page never satisfied {expression!r} in {timeout_s:.0f} s")
            time.sleep(0.5)

    def screenshot(self, out: Path) -> None:
        """Save what the page shows (its viewport) as a PNG."""
        data = self.command("Page.captureScreenshot", {"format": "png"})["data"]
        out.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Ask the browser to exit; end it by its id if it does not."""
        with contextlib.suppress(OSError, DevToolsError):
            self._command("Browser.close")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _command(self, method: str, params: dict[str, Any] | None = None,
                 session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:  # events in between are not needed here: skip them
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise DevToolsError("chromium closed its DevTools pipe (did it start?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)
