"""The local control channel: a unix socket in the state directory, one JSON request per connection.

Why a unix socket (not a watched file): replies carry validation errors back to the caller
(`ecg-edge patient set --age 300` must fail loudly), access is governed by file permissions (0660, the
service's group), and nothing listens on the network. The socket only decodes its envelope; the command
itself goes through the command router (edge_app/command_router.py): same names, same checks, same error
shape as MQTT and the bedside page.

Request:  {"cmd": "patient/set", "args": {"age": 63, "sex": "female"}, "by": "crew-7"}\\n   ("by" optional;
          also accepted inside args, default "local")
Reply:    {"ok": true, "result": ...}\\n   or   {"ok": false, "error": {"code", "message", "details"?}}\\n
Commands: edge_app.command_router.names("socket"): status, config/get, config/set, patient/set,
          patient/clear, alarm/ack, results/latest, alarms/list, store/stats.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_app.command_router import CommandRouter

log = logging.getLogger(__name__)
MAX_REQUEST = 1 << 20


def handle_request(router: CommandRouter, request: Any) -> dict[str, Any]:
    """Decode the socket's envelope and route the command; always returns a reply."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": {"code": "bad_request",
                                       "message": 'request must be a JSON object {"cmd": ..., "args": {...}}'}}
    args = request.get("args") or {}
    by = request.get("by", "local")
    if isinstance(args, dict) and "by" in args:
        args = dict(args)
        by = args.pop("by")
    return router.handle(request["cmd"], args, str(by))


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            reply: dict[str, Any] = {"ok": False, "error": {"code": "bad_json", "message": "request is not valid JSON"}}
        else:
            reply = handle_request(self.server.router, request)  # type: ignore[attr-defined]
        self.wfile.write((json.dumps(reply, default=str) + "\n").encode("utf-8"))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    def __init__(self, path: str | os.PathLike, router: CommandRouter):
        self.path = Path(path)
        self.router = router
        self._server: _Server | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            # A stale socket from a killed daemon; refuse if another daemon still answers on it.
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
                raise RuntimeError(f"another ecg-edge daemon is running (control socket {self.path} answers)")
            except (ConnectionRefusedError, FileNotFoundError):
                self.path.unlink(missing_ok=True)
            finally:
                probe.close()
        old = os.umask(0o117)
        try:
            self._server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        self._server.router = self.router  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="control",
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.path.unlink(missing_ok=True)


def call(path: str | os.PathLike, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Client: send one command to a running daemon. Raises ConnectionError if none answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ConnectionError(f"no ecg-edge daemon answers on {path} ({e.strerror}); is it running? "
                                  "(pass the daemon's --config so the state directory matches)") from None
        sock.sendall((json.dumps({"cmd": cmd, "args": args}) + "\n").encode("utf-8"))
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf)
    finally:
        sock.close()
