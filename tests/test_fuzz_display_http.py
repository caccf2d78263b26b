"""Fuzz/negative layer for the bedside display's HTTP API: raw sockets against the real server, whose writes go
through the real command router into a real device state. Malformed request lines, huge headers, bad bodies,
unknown routes, path tricks and slowloris: every answer is a 4xx (501 unknown method, 505 unknown HTTP version), no
traceback, nothing changes, and the page still answers afterwards."""
from __future__ import annotations

import json
import logging
import random
import socket
import time

from device_helpers import real_device
from edge_app.command_router import CommandRouter
from edge_app.display import DisplayServer, LiveHub
from edge_app.display.connection_guard import Limits


def _exchange(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, half-close, read until the server closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def _statuses(resp: bytes) -> list[int]:
    codes = []
    for line in resp.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12 and line[9:12].isdigit():
            codes.append(int(line[9:12]))
    return codes


def _req(method: str, path: str, body: bytes | None = None, ctype: str | None = "application/json",
         extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}"
    if body is not None:
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def cases(rng: random.Random) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    # malformed request lines
    for line in [b"", b"\r\n", b"GET\r\n", b"GET /\r\n", b"GET / HTTP/9.9\r\n", b"GET / HTTP/1.1 extra\r\n",
                 b"G\x00T / HTTP/1.1\r\n", b"GET /\x00 HTTP/1.1\r\n", b"GET http://evil/ HTTP/1.1\r\n",
                 b"\xff\xfe\xfd HTTP/1.1\r\n", b"GET " + b"/a" * 40000 + b" HTTP/1.1\r\n", b"BREW / HTTP/1.1\r\n",
                 b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1\r\n", b"TRACE / HTTP/1.1\r\n",
                 b"GET / HTTP/1.1\n", b"GET  /  HTTP/1.1\r\n", b"get / http/1.1\r\n"]:
        out.append(("request line", line + b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"))
    for _ in range(40):
        out.append(("random bytes", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))) + b"\r\n\r\n"))
    # huge / many / broken headers
    out.append(("huge header", _req("GET", "/api/status", extra="X-Big: " + "a" * 70000 + "\r\n")))
    out.append(("200 headers", _req("GET", "/api/status", extra="".join(f"X-{i}: y\r\n" for i in range(200)))))
    out.append(("header without colon", _req("GET", "/api/status", extra="NoColonHere\r\n")))
    out.append(("foreign Host", b"GET /api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"))
    out.append(("no Host", b"GET /api/status HTTP/1.1\r\nConnection: close\r\n\r\n"))
    # unknown routes and path tricks
    for path in ["/nope", "/api/nope", "/api/results/..%2f..%2fetc%2fpasswd", "/static/../../etc/passwd",
                 "/static/%2e%2e/server.py", "/static/..", "/static/app.js/../../x", "/api/results/" + "x" * 500,
                 "/api/results/a b", "/api/alarms/%00/ack", "/api/results/x.png?width=9999999",
                 "/api/strip?since=-1", "/api/strip?seconds=nan", "/api/strip?seconds=1e400", "/api/results?limit=x",
                 "//api/status", "/api/status/", "/index.html?" + "q=1&" * 2000, "/%ff%fe", "/api/live?x=\u00e9"]:
        out.append(("route", _req("GET", path)))
        out.append(("route (DELETE)", _req("DELETE", path, b"")))
    # bad bodies on the write endpoints
    bodies = [b"", b"{", b"[]", b"null", b"42", b"\"s\"", b"{\"age\": NaN}", b"{\"age\": Infinity}",
              b"{\"age\": \"63\"}", b"{\"age\": true}", b"{\"age\": 131}", b"{\"age\": -1}", b"{\"sex\": 1}",
              b"{\"sex\": \"other\"}", b"{\"evil\": 1}", b"\xff\xfe", b"[" * 2000 + b"]" * 2000,
              b"{\"a\":" * 1000 + b"1" + b"}" * 1000, b"{\"age\": 1e999}", b"{\"by\": \"" + b"x" * 100 + b"\"}"]
    for body in bodies:
        out.append(("patient body", _req("POST", "/api/patient", body)))
        out.append(("ack body", _req("POST", "/api/alarms/a-1/ack", body)))
    out.append(("wrong content type", _req("POST", "/api/patient", b"{\"age\": 50}", ctype="text/plain")))
    out.append(("form post", _req("POST", "/api/patient", b"age=50", ctype="application/x-www-form-urlencoded")))
    out.append(("no content type", _req("POST", "/api/patient", b"{\"age\": 50}", ctype=None)))
    out.append(("oversized body", _req("POST", "/api/patient", b"{\"age\": 5" + b"0" * 10000 + b"}")))
    out.append(("chunked", b"POST /api/patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n"))
    for cl in ("-1", "abc", "99999999999999999999", "1, 2", ""):
        out.append((f"Content-Length {cl!r}", b"POST /api/patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nConnection: close\r\nContent-Length: " + cl.encode() + b"\r\n\r\n{}"))
    out.append(("short body", b"POST /api/patient HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{\"age\": 5"))
    for m in ("PUT", "PATCH", "HEAD", "POST"):
        out.append((f"{m} on a GET route", _req(m, "/api/status", b"{}")))
    return out


def test_fuzzed_http_requests_get_clean_4xx_and_change_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    dev = real_device(tmp_path, "amb-http")
    hub = LiveHub(commands=CommandRouter(dev.operations, "http"))
    limits = Limits(header_timeout_s=1.0, request_timeout_s=2.0, io_timeout_s=2.0)
    server = DisplayServer(hub, "127.0.0.1", 0, limits=limits).start()
    try:
        patient_before = json.dumps(hub.patient, sort_keys=True)
        all_cases = cases(random.Random(14))
        answered, silent, by_code = 0, 0, {}
        for kind, raw in all_cases:
            resp = _exchange(server.port, raw)
            codes = _statuses(resp)
            if not codes:
                silent += 1                       # e.g. an empty request: the server just closes
                continue
            answered += 1
            for c in codes:
                by_code[c] = by_code.get(c, 0) + 1
                assert c != 500 and (400 <= c < 500 or c in (200, 204, 501, 505)), (kind, raw[:100], resp[:300])
            assert b"Traceback" not in resp, (kind, resp[:300])
        # slowloris: headers that never end are cut off by the header deadline
        slow = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(s)
        deadline = time.monotonic() + 15
        while server.stats().get("reaped", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        for s in slow:
            s.settimeout(5)
            try:
                assert s.recv(100) == b""         # closed by the server, nothing served
            except ConnectionResetError:
                pass
            s.close()
        total = len(all_cases) + len(slow)
        print(f"display HTTP fuzz: {total} requests ({len(slow)} slowloris), answered {answered}, closed without "
              f"answer {silent}, status codes {dict(sorted(by_code.items()))}, reaped {server.stats().get('reaped')}")
        assert server.stats().get("reaped", 0) >= 20
        # nothing changed, nothing crashed, the page still answers
        assert json.dumps(hub.patient, sort_keys=True) == patient_before
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert not tracebacks, [r.getMessage() for r in tracebacks][:5]
        codes = _statuses(_exchange(server.port, _req("GET", "/api/status")))
        assert codes == [200]
        assert _statuses(_exchange(server.port, _req("GET", "/"))) == [200]
    finally:
        server.stop()
        dev.close()
