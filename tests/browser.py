"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
no WebDriver, no websocket library, only the system's browser and the standard library.

    with Browser() as page:
        page.open(url)
        page.type("hello\\n")
        page.wait_for("document.querySelectorAll('.msg.agent').length >= 1")
        png = page.screenshot()
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _high(fd: int) -> int:
    """The fd moved to 10 or above, so the shell's 3<& and 4>& cannot overwrite it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, executable: str | None = None, width: int = 1400, height: int = 860):
        executable = executable or find_browser()
        if executable is None:
            raise RuntimeError("no Chromium found (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="dqnlm-chromium-")
        commands_r, self._commands = map(_high, os.pipe())  # we write; the browser reads fd 3
        self._results, results_w = map(_high, os.pipe())  # the browser writes fd 4; we read
        flags = [
            "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--hide-scrollbars", "--force-device-scale-factor=1",
            f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        # the protocol pipes must be the browser's fds 3 and 4: a shell moves them there
        script = f'exec "$0" "$@" 3<&{commands_r} 4>&{results_w}'
        self._process = subprocess.Popen(
            ["/bin/bash", "-c", script, executable, *flags],  # dash refuses fds above 9
            pass_fds=(commands_r, results_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_r)
        os.close(results_w)
        self._buffer, self._next_id, self._session = b"", 0, None

    def __enter__(self) -> Browser:
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):  # the process is killed below anyway
            self.call("Browser.close", session=False)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        os.close(self._commands)
        os.close(self._results)
        shutil.rmtree(self._profile, ignore_errors=True)

    # ---------------------------------------------------------------------- protocol
    def call(self, method: str, timeout: float = 30.0, session: bool = True, **params) -> dict:
        """Send one command; its result (events in between are skipped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._results], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._results, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # ---------------------------------------------------------------------- actions
    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"still false after {timeout:g} s: {expression}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def type(self, text: str) -> None:
        """Type into the focused element as a person would; a final newline presses Enter."""
        enter = text.endswith("\n")
        if text.rstrip("\n"):
            self.call("Input.insertText", text=text.rstrip("\n"))
        if enter:
            key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
            self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
            self.call("Input.dispatchKeyEvent", type="keyUp", **key)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
