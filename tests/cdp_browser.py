"""A minimal headless-Chromium driver over the Chrome DevTools Protocol (stdlib only).

Why here and not selenium/playwright: the device and CI already have Debian's chromium; a ~200-line
CDP client (WebSocket framing + JSON-RPC) avoids a heavy dependency and a driver-version dance.
A test and benchmark tool, not part of the device (it lives in tests/, not edge_app/). Used by the display's
browser tests, benchmarks/bench_display.py and for README screenshots:

    python tests/cdp_browser.py http://127.0.0.1:8080/ out.png --size 1280x800 --wait 6
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--disable-features=Translate,MediaRouter,OptimizationHints",
                  "--no-default-browser-check", "--password-store=basic"]


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class _WebSocket:
    """Just enough RFC 6455 for CDP: client-masked text frames out, unmasked frames in."""

    def __init__(self, url: str, timeout: float = 30.0):
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (("?" + u.query) if u.query else "")
        req = (f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("websocket handshake: connection closed")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"websocket handshake refused: {head[:200]!r}")
        self.sock.settimeout(None)
        self._send_lock = threading.Lock()

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError("websocket closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask_fast(data, mask)
        with self._send_lock:
            self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._recv_exact(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            if b1 & 0x80:
                mask = self._recv_exact(4)
                payload = _mask_fast(self._recv_exact(n), mask)
            else:
                payload = self._recv_exact(n)
            if op == 0x8:
                raise EOFError("websocket closed by peer")
            if op == 0x9:       # ping -> pong
                with self._send_lock:
                    self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            if op in (0x1, 0x2, 0x0):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _mask_fast(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


class Page:
    """One tab. `send` is synchronous JSON-RPC; events are kept in `events` (bounded)."""

    def __init__(self, ws_url: str):
        self.ws = _WebSocket(ws_url)
        self._id = 0
        self._lock = threading.Lock()
        self._pending: dict[int, list[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.exceptions: list[str] = []
        self.console: list[str] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="cdp-reader")
        self._reader.start()
        self.send("Page.enable")
        self.send("Runtime.enable")

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if "id" in msg:
                    with self._lock:
                        slot = self._pending.get(msg["id"])
                    if slot is not None:
                        slot[1] = msg
                        slot[0].set()
                else:
                    m = msg.get("method", "")
                    if m == "Runtime.exceptionThrown":
                        d = msg["params"]["exceptionDetails"]
                        self.exceptions.append(str(d.get("exception", {}).get("description") or d.get("text")))
                    elif m == "Runtime.consoleAPICalled":
                        args = msg["params"].get("args", [])
                        self.console.append(msg["params"].get("type", "") + ": " + " ".join(
                            str(a.get("value", a.get("description", ""))) for a in args))
                    self.events.append(msg)
                    if len(self.events) > 500:
                        del self.events[:250]
        except (EOFError, OSError, ValueError):
            self._closed = True
            with self._lock:
                for slot in self._pending.values():
                    slot[0].set()

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._id += 1
            mid = self._id
            slot: list[Any] = [threading.Event(), None]
            self._pending[mid] = slot
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        ok = slot[0].wait(timeout)
        with self._lock:
            self._pending.pop(mid, None)
        if not ok or slot[1] is None:
            raise BrowserError(f"CDP {method}: no answer within {timeout} s" + (" (closed)" if self._closed else ""))
        if "error" in slot[1]:
            raise BrowserError(f"CDP {method}: {slot[1]['error']}")
        return slot[1].get("result", {})

    def evaluate(self, expression: str, await_promise: bool = False, timeout: float = 30.0) -> Any:
        r = self.send("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True,
                      awaitPromise=await_promise)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"JS error: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Poll a JS expression until truthy; returns its value. Raises BrowserError with the expression."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except BrowserError as e:
                last = e
            if last and not isinstance(last, BrowserError):
                return last
            time.sleep(interval)
        raise BrowserError(f"timed out after {timeout} s waiting for: {expression} (last: {last!r}); "
                           f"page exceptions: {self.exceptions[-3:]}")

    def set_viewport(self, width: int, height: int, scale: float = 1.0) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=scale,
                  mobile=False)

    def tap(self, selector: str) -> None:
        """A real pointer press + release at the element's centre (like a finger on the touchscreen)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height]; }})()")
        if not box:
            raise BrowserError(f"no element matches {selector!r}")
        x, y = box[0], box[1]
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select && e.select(); e.value = ''; }})()")
        self.send("Input.insertText", text=text)

    def screenshot(self, path: str | os.PathLike) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(base64.b64decode(data))
        return p

    def close(self) -> None:
        self.ws.close()


class Browser:
    """Headless Chromium with a fresh profile in a temp dir; `with Browser() as b: page = b.new_page()`."""

    def __init__(self, binary: str | None = None, extra_flags: list[str] | None = None, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("chromium not found: install it (apt-get install -y chromium) or run tools/install.sh --dev")
        self.profile = tempfile.mkdtemp(prefix="ecg-display-chromium-")
        cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
               *(extra_flags or []), "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + timeout
        lines = []
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            lines.append(line)
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.close()
            raise BrowserError("chromium did not start: " + "".join(lines[-10:]))
        # Keep draining stderr so chromium never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # type: ignore[union-attr]
        self.pages: list[Page] = []

    def _http(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path)
        body = conn.getresponse().read()
        conn.close()
        return json.loads(body)

    def new_page(self, width: int = 1280, height: int = 800) -> Page:
        info = self._http("PUT", "/json/new?about:blank")
        page = Page(info["webSocketDebuggerUrl"])
        page.set_viewport(width, height)
        self.pages.append(page)
        return page

    def close(self) -> None:
        for p in getattr(self, "pages", []):
            p.close()
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Screenshot a page in headless Chromium (bedside display check).")
    ap.add_argument("url")
    ap.add_argument("out", help="PNG path")
    ap.add_argument("--size", default="1280x800", help="viewport WIDTHxHEIGHT")
    ap.add_argument("--wait", type=float, default=5.0, help="seconds to let the page run before the shot")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    with Browser() as b:
        p = b.new_page(w, h)
        p.navigate(a.url)
        time.sleep(a.wait)
        p.screenshot(a.out)
        if p.exceptions:
            print("page exceptions:", *p.exceptions, sep="\n  ")
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
