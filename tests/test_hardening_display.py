"""Issue 14 item 3: the bedside display survives a hostile network — real HTTP connections, real server.

An attacker process (its own file limit) opens 1,025 idle connections and 400 half-open slowloris requests and
tries to take every live-feed slot, from many source addresses in 127.0.0.0/8 (the kiosk is exactly
127.0.0.1; the other loopback addresses stand in for machines on the LAN, so nothing leaves this host). The
server runs in this process with RLIMIT_NOFILE lowered to 1024, next to a real result store, audit log and
outbox, which must keep working; the page must keep answering; writes from the network need the token.
"""
from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from device_helpers import real_device
from edge_app.command_router import CommandRouter
from edge_app.display import DisplayServer, LiveHub
from edge_app.display.connection_guard import Limits
from edge_app.storage.audit import verify_audit_log
from edge_app.uplink.outbox import Outbox

ATTACKER = textwrap.dedent(r"""
    import json, resource, socket, sys, time
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    port, idle, half, sse = (int(x) for x in sys.argv[1:5])
    ips = [f"127.0.{1 + i // 250}.{2 + i % 250}" for i in range(300)]
    socks, failed = [], 0
    def conn(i):
        global failed
        s = socket.socket()
        s.settimeout(2.0)
        try:
            s.bind((ips[i % len(ips)], 0))
            s.connect(("127.0.0.1", port))
            socks.append(s)
            return s
        except OSError:
            failed += 1
            s.close()
            return None
    for i in range(idle):
        conn(i)
    slow = [s for s in (conn(i) for i in range(half)) if s is not None]
    for s in slow:
        try:
            s.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            pass
    sse_ok = 0
    for i in range(sse):
        s = conn(i % 40)                               # 40 addresses, 2 streams each would be allowed
        if s is None:
            continue
        try:
            s.send(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            if b"text/event-stream" in s.recv(4096):
                sse_ok += 1
        except OSError:
            pass
    print(json.dumps({"opened": len(socks), "failed": failed, "sse_streams": sse_ok}), flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sys.stdin.readline():   # until the test closes stdin
        pass
    for s in slow:                                      # slowloris: dribble (most were cut off already)
        try:
            s.send(b"X")
        except OSError:
            pass
""")


def _get(port: int, path: str, timeout: float = 10.0, **headers: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _post(port: int, path: str, body: dict, source: str = "127.0.0.1", **headers: str) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def low_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_flood_of_idle_half_open_and_live_feed_connections(tmp_path, low_nofile):
    dev = real_device(tmp_path, "amb-disp")
    hub = LiveHub(commands=CommandRouter(dev.operations, "http"))
    limits = Limits(header_timeout_s=1.0, request_timeout_s=3.0, io_timeout_s=3.0)
    server = DisplayServer(hub, "127.0.0.1", 0, write_token="s3cret-token", limits=limits).start()
    ob = Outbox(tmp_path / "outbox.sqlite")
    fds_before, threads_before = _fds(), threading.active_count()
    atk = subprocess.Popen([sys.executable, "-c", ATTACKER, str(server.port), "1025", "400", "40"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(atk.stdout.readline())
        st = server.stats()
        fds_during, threads_during = _fds(), threading.active_count()
        # the page still answers, from the kiosk, during the flood
        status, page = _get(server.port, "/")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(server.port, "/api/status")
        assert status == 200 and isinstance(json.loads(body), dict)
        # the kiosk's live feed still gets a slot although the network holds every slot it may have
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"event: hello" not in head:
            chunk = s.recv(65536)
            assert chunk, head[:200]
            head += chunk
        assert b"200 OK" in head
        s.close()
        # the daemon process can still write its store, audit log and outbox (no EMFILE)
        dev.state.store.put({"id": "r-flood", "time": "2026-12-04T17:00:00Z", "triage_level": "none",
                             "alarm_priority": "none"})
        dev.state.audit.append("result", {"id": "r-flood"})
        ob.put("triage", {"id": "r-flood"}, "high")
        assert dev.state.store.get("r-flood") and ob.depth() == 1 and verify_audit_log(dev.state.audit.path).ok
        # the kiosk can still change state (the network's share of connections is full: see the next test)
        code, doc = _post(server.port, "/api/patient", {"age": 64})
        assert code == 200 and doc["patient"]["age"] == 64
        # slowloris requests are cut off by the header deadline, not held
        deadline = time.monotonic() + 20
        while server.stats().get("reaped", 0) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        st2 = server.stats()
    finally:
        atk.stdin.close()
        atk.wait(30)
    total = 1025 + 400 + 40
    refused = st.get("refused_busy", 0) + st.get("refused_per_client", 0)
    print(f"display flood: {total} connections tried ({report['opened']} opened by the attacker), "
          f"admitted {st2.get('admitted')}, refused {refused}+, reaped {st2.get('reaped')}, peak {st2['peak']} "
          f"(cap {st2['max_connections']}), attacker live feeds {report['sse_streams']}, "
          f"fds {fds_before}->{fds_during}, threads {threads_before}->{threads_during}")
    assert st2["max_connections"] == 64 and st2["peak"] <= 64
    assert refused > 1000 and st2["reaped"] >= 50
    assert report["sse_streams"] <= limits.sse_max - limits.sse_local_reserved
    assert fds_during - fds_before <= 64 + 8, "connections were not bounded below the fd limit"
    assert threads_during - threads_before <= 64 + 4
    # once the flood is gone everything is released
    deadline = time.monotonic() + 20
    while server.stats()["active"] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.stats()["active"] == 0
    server.stop()
    ob.close()
    dev.close()


def test_writes_from_the_network_need_the_token(tmp_path):
    dev = real_device(tmp_path, "amb-disp3")
    hub = LiveHub(commands=CommandRouter(dev.operations, "http"))
    with DisplayServer(hub, "127.0.0.1", 0, write_token="s3cret-token") as server:
        code, doc = _post(server.port, "/api/patient", {"age": 61, "sex": "female"}, source="127.0.0.9")
        assert code == 403 and "display token" in doc["error"]
        code, doc = _post(server.port, "/api/patient", {"age": 62}, source="127.0.0.9",
                          **{"X-Display-Token": "wrong-token"})
        assert code == 403
        code, doc = _post(server.port, "/api/patient", {"age": 63}, source="127.0.0.9",
                          **{"X-Display-Token": "s3cret-token"})
        assert code == 200 and doc["patient"]["age"] == 63
        code, doc = _post(server.port, "/api/patient", {"age": 65}, source="127.0.0.9",
                          Authorization="Bearer s3cret-token")
        assert code == 200 and doc["patient"]["age"] == 65
    dev.close()


def test_without_a_token_only_the_kiosk_may_change_state(tmp_path):
    dev = real_device(tmp_path, "amb-disp2")
    hub = LiveHub(commands=CommandRouter(dev.operations, "http"))
    with DisplayServer(hub, "127.0.0.1", 0) as server:
        code, doc = _post(server.port, "/api/patient", {"age": 50}, source="127.0.0.5")
        assert code == 403 and "only the device's own screen" in doc["error"]
        code, _ = _post(server.port, "/api/patient", {"age": 50}, source="127.0.0.5", Authorization="Bearer x" * 3)
        assert code == 403
        code, doc = _post(server.port, "/api/patient", {"age": 50})
        assert code == 200 and doc["patient"]["age"] == 50
        # reading stays open to the network (the page is view-only from elsewhere)
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=("127.0.0.5", 0))
        c.request("GET", "/api/patient", headers={"Host": "127.0.0.1"})
        assert c.getresponse().status == 200
        c.close()
    dev.close()


def _open_sse(port: int, source: str) -> socket.socket | None:
    """A live feed from `source`; the socket when the server streams, None when it refused (503)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    if b" 200 " in head.split(b"\r\n", 1)[0]:
        return s
    s.close()
    return None


def test_network_clients_cannot_take_the_kiosks_live_feed_slots(tmp_path):
    hub = LiveHub()
    limits = Limits()
    with DisplayServer(hub, "127.0.0.1", 0, limits=limits) as server:
        held = []
        tried = 0
        for i in range(40):                                   # 20 addresses, 2 attempts each
            tried += 1
            s = _open_sse(server.port, f"127.0.3.{2 + i % 20}")
            if s is not None:
                held.append(s)
        assert len(held) == limits.sse_max - limits.sse_local_reserved
        same = [_open_sse(server.port, "127.0.4.2") for _ in range(3)]   # per-address cap on a free server?
        assert sum(x is not None for x in same) == 0               # no: the network's share is already full
        kiosk = [_open_sse(server.port, "127.0.0.1") for _ in range(limits.sse_local_reserved)]
        assert all(k is not None for k in kiosk), "the kiosk lost its reserved live-feed slots"
        print(f"live-feed attempts from the network: {tried + 3}, admitted {len(held)}, kiosk slots kept "
              f"{len(kiosk)}/{limits.sse_local_reserved}")
        for s in held + kiosk:
            s.close()
        deadline = time.monotonic() + 10
        while server.sse_slots.count() and time.monotonic() < deadline:
            time.sleep(0.1)
        # per address: at most sse_per_client streams once slots are free
        mine = [_open_sse(server.port, "127.0.5.2") for _ in range(4)]
        assert sum(x is not None for x in mine) == limits.sse_per_client
        for s in mine:
            if s is not None:
                s.close()
