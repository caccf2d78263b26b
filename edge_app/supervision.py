"""systemd supervision: sd_notify over $NOTIFY_SOCKET and a watchdog fed only by real progress.

Why implemented here (no python-systemd): it is ~30 lines of datagram socket code, and the device
image should not need libsystemd bindings. Protocol: send "KEY=VALUE\\n..." datagrams to the unix
socket named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace).

Why a progress-gated watchdog: a daemon whose thread is alive but whose data path is stuck (serial
read blocked, inference hung) must be restarted by systemd. So WATCHDOG=1 is sent only if, within the
last watchdog period, the pipeline reported progress: samples arrived, or the driver honestly reported
that no device is connected, and no analysis overran its deadline.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify client. A no-op when not started by systemd (no $NOTIFY_SOCKET)."""

    def __init__(self, address: str | None = None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self.address:
            addr = self.address
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self._addr = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the data path on a notify socket nobody reads (its queue holds ~10 datagrams).
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """notify(READY=1, STATUS="...") -> True if sent."""
        if self._sock is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "replace")
        try:
            self._sock.sendto(msg, self._addr)
            return True
        except OSError as e:          # systemd gone or socket full: never crash the daemon over it
            log.debug("sd_notify failed: %s", e)
            return False

    def ready(self, status: str = "") -> None:
        self.notify(READY=1, STATUS=status or "ready", MAINPID=os.getpid())

    def status(self, text: str) -> None:
        self.notify(STATUS=text)

    def stopping(self, status: str = "stopping") -> None:
        self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """systemd's WatchdogSec for this process ($WATCHDOG_USEC, honouring $WATCHDOG_PID), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        v = int(usec)
    except ValueError:
        return None
    return v / 1e6 if v > 0 else None


class Watchdog:
    """Pings systemd's watchdog from a small thread, but only while progress() keeps being called.

    progress(what) is called by the data path; stall(reason) marks the data path as not progressing
    (e.g. an inference overran its deadline) until the next progress().
    """

    def __init__(self, notifier: Notifier, interval_s: float | None = None):
        self.notifier = notifier
        self.interval_s = interval_s if interval_s is not None else watchdog_interval_s()
        self._last_progress = time.monotonic()
        self._last_what = "start"
        self._stalled: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0
        self.missed = 0

    def progress(self, what: str = "samples") -> None:
        """The data path moved. An analysis overrun (stall) is only lifted by an analysis that finished in
        time (what="inference"): samples arriving do not prove that inference keeps up."""
        self._last_progress = time.monotonic()
        self._last_what = what
        if what == "inference":
            self._stalled = None

    def stall(self, reason: str) -> None:
        self._stalled = reason

    def healthy(self) -> tuple[bool, str]:
        if self._stalled:
            return False, self._stalled
        age = time.monotonic() - self._last_progress
        limit = self.interval_s if self.interval_s else 10.0
        if age > limit:
            return False, f"no progress for {age:.1f} s (last: {self._last_what})"
        return True, self._last_what

    def start(self) -> None:
        if not self.interval_s or not self.notifier.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = max(0.05, self.interval_s / 3.0)
        while not self._stop.wait(period):
            ok, why = self.healthy()
            if ok:
                self.notifier.notify(WATCHDOG=1)
                self.pings += 1
            else:
                self.missed += 1
                log.warning("watchdog not fed: %s", why)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
