"""DisplayServer: stdlib HTTP server for the bedside page and its JSON API.

Why stdlib (http.server.ThreadingHTTPServer) and no web framework: the device image stays small,
nothing extra to audit, and the load is one kiosk browser plus the odd integration client. Every
asset is read from the package's `static/` directory; the page works with no network at all.

Writes (patient context, alarm acknowledgement) must be `Content-Type: application/json`, at most
`MAX_BODY` bytes, and valid against the hub's checks; anything else is a 4xx JSON error and changes
nothing. Requiring JSON also means a plain cross-site form cannot post to the device.

Connections are bounded (connection_guard.py): admission limits with a reserve for the device's own kiosk,
deadlines for headers and requests, live-feed slots the network cannot all take, and writes from anywhere but
the kiosk only with the display token.
"""
from __future__ import annotations

import errno
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


from edge_app.display.connection_guard import GuardedHTTPServer, Limits, SseSlots, write_allowed
from edge_app.display.hub import DisplayInputError, LiveHub
from edge_app.display.live_feed import LiveFeed
from edge_app.display.http_params import HttpError, check_id, float_param, int_param, reject_constant
from edge_app.display.views import display_strip, strip_payload
from edge_app.errors import ConfigError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_BODY = 4096
MAX_SSE_CLIENTS = Limits.sse_max
_CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
           ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
           ".ico": "image/x-icon", ".json": "application/json"}


class _Handler(LiveFeed, BaseHTTPRequestHandler):
    server_version = "ecg-edge-display/1"
    protocol_version = "HTTP/1.1"
    hub: LiveHub            # set on the subclass made per server
    owner: "DisplayServer"
    timeout = Limits.io_timeout_s   # every send/recv; the server's reaper bounds headers and requests

    # ---------------------------------------------------------------- plumbing
    def handle_one_request(self) -> None:
        self.server.mark(self.request, "reading")       # waiting for a request line + headers
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.mark(self.request, "handling")
        return ok

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _dispatch(self, method: str) -> None:
        try:
            if not self.owner.host_allowed(self.headers.get("Host")):
                self._drain_body()
                raise HttpError(421, "Host header not accepted: use the device's own address "
                                      "(protects the local API from DNS rebinding)")
            if method in ("POST", "DELETE", "PUT", "PATCH") and not write_allowed(
                    self.client_address[0], self.headers, self.owner.write_token):
                self._drain_body()
                raise HttpError(403, "changing patient or alarms from another machine needs the display token "
                                      "(display.write_token_file; header X-Display-Token)" if self.owner.write_token
                                 else "only the device's own screen may change patient or alarms "
                                      "(set display.write_token_file to allow other machines with a token)")
            url = urlsplit(self.path)
            self._route(method, url.path, parse_qs(url.query, keep_blank_values=True))
        except HttpError as e:
            self._error(e.status, e.message)
        except DisplayInputError as e:
            self._error(e.status, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # never leak a traceback to the page; log it
            log.exception("display: %s %s failed", method, self.path)
            try:
                self._error(500, f"internal error: {type(e).__name__}")
            except OSError:
                pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_json(self) -> Any:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True      # cannot skip a chunked body safely: drop the connection
            raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
        if ctype != "application/json":
            self._drain_body()                # keep a keep-alive connection in step
            raise HttpError(415, f"Content-Type must be application/json, got {ctype or 'none'}")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "Content-Length is required")
        try:
            n = int(length)
        except ValueError:
            raise HttpError(400, f"bad Content-Length {length!r}") from None
        if n < 0:
            raise HttpError(400, f"bad Content-Length {length!r}")
        if n > MAX_BODY:
            self.close_connection = True      # do not read (or trust) the rest of an oversized body
            raise HttpError(413, f"body is {n} bytes; the limit is {MAX_BODY}")
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as e:   # nesting too deep
            raise HttpError(400, f"body is not valid JSON: {e}") from None

    def _drain_body(self) -> None:
        """Read and discard a small body of a request we refuse for another reason (keeps the
        connection usable); a large one closes the connection."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        if 0 < n <= MAX_BODY:
            self.rfile.read(n)
        elif n > MAX_BODY:
            self.close_connection = True

    # ---------------------------------------------------------------- routes
    def _route(self, method: str, path: str, q: dict[str, list[str]]) -> None:
        hub = self.hub
        if method not in ("GET", "POST", "DELETE"):
            self._drain_body()
            raise HttpError(405, f"method {method} not allowed")
        if path in ("/", "/index.html"):
            self._only(method, "GET")
            return self._static("index.html")
        if path.startswith("/static/"):
            self._only(method, "GET")
            return self._static(path[len("/static/"):])
        if path == "/api/status":
            self._only(method, "GET")
            return self._json(200, hub.status())
        if path == "/api/latest":
            self._only(method, "GET")
            r = hub.latest()
            if r is None:
                raise HttpError(404, "no result yet")
            return self._json(200, r)
        if path == "/api/results":
            self._only(method, "GET")
            limit = int_param(q, "limit", 20, 1, 200)
            return self._json(200, {"results": hub.results(limit)})
        if path == "/api/alarms":
            self._only(method, "GET")
            return self._json(200, {"alarms": hub.alarms()})
        m = re.fullmatch(r"/api/results/([^/]+)/feedback", path)
        if m:
            self._only(method, "GET")
            rid = check_id(m.group(1))
            if self.hub.result(rid) is None:
                raise HttpError(404, f"no result with id {rid!r}")
            return self._json(200, {"result_id": rid, "feedback": self.hub.feedback(rid)})
        m = re.fullmatch(r"/api/results/([^/]+?)(\.png)?", path)
        if m:
            self._only(method, "GET")
            return self._result(check_id(m.group(1)), png=bool(m.group(2)), q=q)
        if path == "/api/strip":
            self._only(method, "GET")
            since = int_param(q, "since", None, 0, 2 ** 62)
            seconds = float_param(q, "seconds", None, 0.1, 60.0)
            return self._json(200, hub.live_strip(since, seconds))
        if path == "/api/live":
            self._only(method, "GET")
            return self._sse(q)
        if path == "/api/patient":
            if method == "GET":
                return self._json(200, {"patient": hub.patient})
            if method == "POST":
                body = self._read_json()
                return self._json(200, {"patient": hub.set_patient(body)})
            if method == "DELETE":
                self._drain_body()
                return self._json(200, {"patient": hub.clear_patient()})
        m = re.fullmatch(r"/api/alarms/([^/]+)/ack", path)
        if m:
            if method != "POST":
                self._drain_body()
                raise HttpError(405, f"use POST to acknowledge an alarm, not {method}")
            aid = check_id(m.group(1))
            body = self._read_json()
            if not isinstance(body, dict):
                raise HttpError(400, "body must be a JSON object, e.g. {\"by\": \"crew\"}")
            extra = sorted(set(body) - {"by"})
            if extra:
                raise HttpError(400, f"unknown field(s) {extra}; the only field is 'by'")
            by = body.get("by", "bedside")
            if not isinstance(by, str) or not (1 <= len(by.strip()) <= 64):
                raise HttpError(400, "'by' must be a non-empty string of at most 64 characters")
            return self._json(200, {"alarm": hub.acknowledge_alarm(aid, by.strip())})
        if path.startswith("/api/"):
            self._drain_body()
            raise HttpError(404, f"no such endpoint {path}")
        self._drain_body()
        raise HttpError(404, f"not found: {path}")

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            self._drain_body()
            raise HttpError(405, f"method {method} not allowed here; use {allowed}")

    def _static(self, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_\-]+\.[a-z]{2,4}", name):
            raise HttpError(404, f"no such asset {name!r}")
        f = STATIC_DIR / name
        if not f.is_file():
            raise HttpError(404, f"no such asset {name!r}")
        self._send(200, f.read_bytes(), _CTYPES.get(f.suffix, "application/octet-stream"))

    def _result(self, rid: str, png: bool, q: dict[str, list[str]]) -> None:
        r = self.hub.result(rid)
        if r is None:
            raise HttpError(404, f"no result with id {rid!r}")
        strip = self.hub.strip(rid)
        if png:
            if strip is None:
                raise HttpError(404, f"result {rid!r} has no stored strip to render")
            width = int_param(q, "width", 1600, 400, 4000)
            from edge_app.display.render_png import render_result_png
            body = render_result_png(r, strip[0], display_strip(*strip), width=width)
            return self._send(200, body, "image/png")
        out = dict(r)
        out["strip"] = strip_payload(*strip) if strip is not None else None
        return self._json(200, out)


class DisplayServer:
    """The bedside page + JSON API over a LiveHub. Bound to localhost unless told otherwise."""

    def __init__(self, hub: LiveHub, host: str = "127.0.0.1", port: int = 8080, *, write_token: str = "",
                 limits: Limits | None = None):
        self.hub = hub
        self.host, self.port = host, int(port)
        self.write_token = write_token
        self.limits = limits or Limits()
        self.sse_slots = SseSlots(self.limits)
        self._httpd: GuardedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def stats(self) -> dict[str, int]:
        """Connection counters (admitted, refused_busy, refused_per_client, reaped, active, peak) + live feeds."""
        base = self._httpd.stats() if self._httpd is not None else {}
        return {**base, "sse_clients": self.sse_slots.count(), "sse_refused": self.sse_slots.refused}

    def host_allowed(self, host_header: str | None) -> bool:
        """On a loopback or specific address, only requests naming this device are served; bound to
        all interfaces (0.0.0.0 / ::) any Host is accepted because the device's names are unknown."""
        if self.host in ("0.0.0.0", "::", ""):
            return True
        if not host_header:
            return False
        h = host_header.strip().lower()
        if h.startswith("["):
            name = h[1:h.find("]")] if "]" in h else h
        else:
            name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
        return name in {"localhost", "127.0.0.1", "::1", self.host.lower()}

    @property
    def url(self) -> str:
        return f"http://{self.host if ':' not in self.host else '[' + self.host + ']'}:{self.port}/"

    def start(self) -> "DisplayServer":
        """Bind and serve in a background thread. port=0 picks a free port (see .port after)."""
        handler = type("DisplayHandler", (_Handler,), {"hub": self.hub, "owner": self,
                                                       "timeout": self.limits.io_timeout_s})
        try:
            httpd = GuardedHTTPServer((self.host, self.port), handler, self.limits)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError("display.port", f"port {self.port} on {self.host} is already in use",
                                  "choose a free port in [display] port, or stop the other service") from e
            raise ConfigError("display.host", f"cannot listen on {self.host}:{self.port} ({e})",
                              "use an address of this device, e.g. 127.0.0.1") from e
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="display-http", daemon=True)
        self._thread.start()
        log.info("bedside display on %s", self.url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.hub._cond:
            self.hub._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "DisplayServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
