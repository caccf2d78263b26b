"""sd_notify client and the progress-gated watchdog, over a real unix datagram socket."""
from __future__ import annotations

import socket
import time

from edge_app.supervision import Notifier, Watchdog, watchdog_interval_s


def _listener(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "n.sock"))
    s.settimeout(0.05)
    return s


def _drain(s) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return out


def test_notify_messages_and_abstract_namespace(tmp_path):
    s = _listener(tmp_path)
    n = Notifier(str(tmp_path / "n.sock"))
    n.ready("up")
    n.status("streaming")
    n.stopping()
    msgs = _drain(s)
    assert msgs[0].split("\n")[:2] == ["READY=1", "STATUS=up"] and "STATUS=streaming" in msgs[1]
    assert msgs[2].startswith("STOPPING=1")
    assert Notifier("").enabled is False and Notifier("").notify(READY=1) is False


def test_notify_never_blocks_when_nobody_reads(tmp_path):
    s = _listener(tmp_path)
    n = Notifier(str(tmp_path / "n.sock"))
    t0 = time.monotonic()
    for i in range(200):
        n.status(f"s{i}")
    assert time.monotonic() - t0 < 1.0
    s.close()


def test_watchdog_pings_only_while_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "300000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 0.3
    s = _listener(tmp_path)
    wd = Watchdog(Notifier(str(tmp_path / "n.sock")))
    wd.start()
    try:
        for _ in range(8):                    # samples flowing: pings
            wd.progress("samples")
            time.sleep(0.05)
        assert any("WATCHDOG=1" in m for m in _drain(s))
        time.sleep(0.6)                       # no progress for > WatchdogSec: no pings
        _drain(s)
        time.sleep(0.4)
        assert not any("WATCHDOG=1" in m for m in _drain(s))
        assert wd.healthy()[0] is False
        wd.progress("front end no_device")    # honest "nothing to read" counts as progress
        wd.stall("analysis overran")          # ... but an overrun stops the pings until the next progress
        time.sleep(0.3)
        _drain(s)
        time.sleep(0.25)
        assert not any("WATCHDOG=1" in m for m in _drain(s))
        wd.progress("inference")
        time.sleep(0.25)
        assert any("WATCHDOG=1" in m for m in _drain(s))
    finally:
        wd.stop()
