"""Connection limits for the bedside display's HTTP server: nobody on the network can starve the page or the daemon.

Why (issue 14 item 3): the display runs inside the daemon process. With one thread per connection and no
timeouts, 400 half-open requests held 400 threads and 1,025 idle connections used up the process's file
descriptors, after which the page timed out and the result store, audit log and outbox of the same process
failed with EMFILE; any client could hold every live-feed slot. So:

- Admission (GuardedHTTPServer.verify_request): at most `max_connections` at once, capped at a quarter of
  RLIMIT_NOFILE so the daemon's own files always have room; `local_reserved` of them only for the device's own
  kiosk (127.0.0.1 / ::1); at most `per_client` from any other address. A refused connection gets a short
  503 and is closed at once, without a thread.
- Deadlines (a reaper thread): the request line and headers must arrive within `header_timeout_s` (slowloris,
  idle keep-alive), a whole ordinary request within `request_timeout_s`; every single send/recv within
  `io_timeout_s` (a client that stops reading). Live feeds (SSE) have no overall deadline.
- Live-feed slots (SseSlots): `sse_max` in all, `sse_local_reserved` of them only for the kiosk, at most
  `sse_per_client` per other address.
- Writes (set patient, acknowledge an alarm) from anywhere but the kiosk need the display token
  (`display.write_token_file`; header `X-Display-Token` or `Authorization: Bearer`). Without a token
  configured only the kiosk may change state.

Limits: a flood still costs the attacker's share of connections and CPU for accept+refuse; the reservation is
by source address, so another process on the device itself counts as the kiosk; a network client that holds
the token is trusted as much as the kiosk.
"""
from __future__ import annotations

import hmac
import logging
import resource
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Mapping

log = logging.getLogger(__name__)

LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Retry-After: 5\r\nContent-Length: 58\r\n\r\n"
         b'{"error": "too many connections, try again", "status": 503}')


def is_local(address: str) -> bool:
    """The device's own kiosk: exactly the loopback addresses (not the rest of 127/8)."""
    return address in LOCAL_ADDRESSES


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    local_reserved: int = 8
    per_client: int = 8
    header_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    io_timeout_s: float = 15.0
    sse_max: int = 8
    sse_local_reserved: int = 2
    sse_per_client: int = 2

    def effective_max_connections(self) -> int:
        """max_connections, but never more than a quarter of the process's file-descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = self.max_connections if soft == resource.RLIM_INFINITY else min(self.max_connections, soft // 4)
        return max(self.local_reserved + 1, cap)


@dataclass
class _Conn:
    address: str
    state: str = "reading"          # reading (request line + headers) | handling | streaming
    since: float = field(default_factory=time.monotonic)


class GuardedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with admission control, per-connection deadlines and counters (`stats()`)."""

    daemon_threads = True
    request_queue_size = 128        # a flood is accepted and refused fast, not left in the kernel backlog

    def __init__(self, address: tuple[str, int], handler: Any, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.max_connections = self.limits.effective_max_connections()
        self._conns: dict[socket.socket, _Conn] = {}
        self._guard_lock = threading.Lock()
        self._counts = Counter()
        self._peak = 0
        self._closing = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap_loop, name="display-reaper", daemon=True)
        self._reaper.start()

    # -- admission -------------------------------------------------------------------------------
    def verify_request(self, request: Any, client_address: Any) -> bool:
        addr = str(client_address[0])
        local = is_local(addr)
        with self._guard_lock:
            total = len(self._conns)
            limit = self.max_connections if local else self.max_connections - self.limits.local_reserved
            reason = None
            if total >= limit:
                reason = "busy"
            elif not local and sum(1 for c in self._conns.values() if c.address == addr) >= self.limits.per_client:
                reason = "per_client"
            if reason is None:
                self._conns[request] = _Conn(addr)
                self._peak = max(self._peak, len(self._conns))
                self._counts["admitted"] += 1
                return True
            self._counts[f"refused_{reason}"] += 1
        try:
            request.send(_BUSY, socket.MSG_DONTWAIT)
        except OSError:
            pass
        return False                 # socketserver closes it

    def shutdown_request(self, request: Any) -> None:
        with self._guard_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def mark(self, request: Any, state: str) -> None:
        """The handler says where it is: reading (waiting for a request), handling, streaming."""
        with self._guard_lock:
            c = self._conns.get(request)
            if c is not None:
                c.state, c.since = state, time.monotonic()

    # -- deadlines -------------------------------------------------------------------------------
    def _reap_loop(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            expired = []
            with self._guard_lock:
                for sock, c in self._conns.items():
                    limit = {"reading": self.limits.header_timeout_s,
                             "handling": self.limits.request_timeout_s}.get(c.state)
                    if limit is not None and now - c.since > limit:
                        expired.append((sock, c))
                        c.state, c.since = "reaped", now
            for sock, c in expired:
                self._counts["reaped"] += 1
                try:
                    sock.shutdown(socket.SHUT_RDWR)      # wakes the blocked reader; its thread then ends
                except OSError:
                    pass

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()

    def stats(self) -> dict[str, int]:
        with self._guard_lock:
            return {"active": len(self._conns), "peak": self._peak, "max_connections": self.max_connections,
                    **self._counts}


class SseSlots:
    """Live-feed slots: a reserve for the kiosk, a per-address cap for everyone else."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()
        self.refused = 0

    def enter(self, address: str) -> bool:
        with self._lock:
            total = sum(self._held.values())
            if is_local(address):
                ok = total < self.limits.sse_max
            else:
                remote = total - sum(n for a, n in self._held.items() if is_local(a))
                local_free_reserve = max(0, self.limits.sse_local_reserved - (total - remote))
                ok = (total + local_free_reserve < self.limits.sse_max
                      and self._held[address] < self.limits.sse_per_client)
            if ok:
                self._held[address] += 1
            else:
                self.refused += 1
            return ok

    def exit(self, address: str) -> None:
        with self._lock:
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]

    def count(self) -> int:
        with self._lock:
            return sum(self._held.values())


def write_allowed(address: str, headers: Mapping[str, str], token: str) -> bool:
    """State-changing requests: the kiosk always; anyone else only with the configured display token."""
    if is_local(address):
        return True
    if not token:
        return False
    given = headers.get("X-Display-Token") or ""
    auth = headers.get("Authorization") or ""
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def read_token_file(path: str) -> str:
    """The display token from a file (first line, stripped); "" when no file is configured."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as fh:
        token = fh.readline().strip()
    if len(token) < 8:
        raise ValueError(f"{path}: the display token must be at least 8 characters")
    return token


def display_token(cfg: Any) -> str:
    """display.write_token_file read for the server; a ConfigError names the key when it cannot be used."""
    from edge_app.errors import ConfigError
    path = cfg.get("display.write_token_file")
    try:
        return read_token_file(path)
    except (OSError, ValueError) as exc:
        raise ConfigError("display.write_token_file", f"cannot use {path!r}: {exc}",
                          "put a token of 8+ characters on the first line of a file readable by the daemon, "
                          "or set \"\" to allow changes only from the device's own screen") from None
