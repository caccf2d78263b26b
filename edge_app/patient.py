"""Patient context, and the local control channel that sets it (and the rest of DeviceControl).

Patient context (age, sex; either may be unknown) lives in the daemon and is persisted in
<state_dir>/patient.json so a restart mid-call keeps it; `clear` forgets it for the next patient.

The control channel is a unix stream socket in the state directory, one JSON request per connection.

Why a unix socket (not a watched file): replies carry validation errors back to the caller
(`ecg-edge patient set --age 300` must fail loudly), access is governed by file permissions (0660,
the service's group), and nothing listens on the network.

Request:  {"cmd": "set_patient", "args": {"age": 63, "sex": "female"}}\\n
Reply:    {"ok": true, "result": {...}}\\n   or   {"ok": false, "error": "...", "key": "...", "fix": "..."}\\n
Commands: status, get_config, set_config{changes}, set_patient{age, sex}, clear_patient,
          acknowledge_alarm{alarm_id, by}, latest{n}, alarms, store_stats.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from edge_app.errors import ConfigError
from edge_app.results import PatientContext
from edge_app.storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)
MAX_REQUEST = 1 << 20
COMMANDS = ("status", "get_config", "set_config", "set_patient", "clear_patient", "acknowledge_alarm",
            "latest", "alarms", "store_stats")


def validate_patient(age: Any, sex: Any) -> PatientContext:
    """Check age/sex from any source (CLI, MQTT, bedside page). Raises ValueError naming the fix."""
    if isinstance(age, str) and age.strip().lower() in ("", "unknown", "none", "null"):
        age = None
    if age is not None:
        if isinstance(age, bool):
            raise ValueError("age must be a number of years from 0 to 130, or unknown")
        try:
            a = float(age)
        except (TypeError, ValueError):
            raise ValueError(f"age must be a number of years from 0 to 130, or unknown; got {age!r}") from None
        if not (0 <= a <= 130):
            raise ValueError(f"age must be a number of years from 0 to 130, or unknown; got {age!r}")
        age = a
    if isinstance(sex, str):
        s = sex.strip().lower()
        sex = {"m": "male", "f": "female", "unknown": None, "": None}.get(s, s)
    if sex is not None and sex not in ("male", "female"):
        raise ValueError(f"sex must be 'male', 'female' or unknown; got {sex!r}")
    return PatientContext(age=age, sex=sex)


class PatientStore:
    """The current patient context, persisted atomically so a restart does not lose it."""

    def __init__(self, path: str | os.PathLike, default: PatientContext | None = None):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ctx = default or PatientContext()
        if self.path.exists():
            try:
                d = json.loads(self.path.read_text())
                self._ctx = validate_patient(d.get("age"), d.get("sex"))
            except (OSError, ValueError) as e:
                log.warning("ignoring unreadable %s: %s", self.path, e)

    def get(self) -> PatientContext:
        with self._lock:
            return PatientContext(self._ctx.age, self._ctx.sex)

    def set(self, ctx: PatientContext) -> PatientContext:
        with self._lock:
            self._ctx = ctx
            atomic_write_bytes(self.path, json.dumps(ctx.to_dict()).encode())
            return PatientContext(ctx.age, ctx.sex)


def handle_request(target: Any, req: Any) -> dict[str, Any]:
    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
        return {"ok": False, "error": 'request must be a JSON object {"cmd": ..., "args": {...}}'}
    cmd, args = req["cmd"], req.get("args") or {}
    if cmd not in COMMANDS:
        return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"}
    if not isinstance(args, dict):
        return {"ok": False, "error": "args must be a JSON object"}
    try:
        if cmd == "set_config":
            result = target.set_config(args.get("changes", {}))
        elif cmd == "set_patient":
            result = target.set_patient(args.get("age"), args.get("sex"))
        elif cmd == "acknowledge_alarm":
            result = target.acknowledge_alarm(args.get("alarm_id", ""), args.get("by", "local"))
        elif cmd == "latest":
            result = target.latest(int(args.get("n", 10)))
        else:
            result = getattr(target, cmd)()
        return {"ok": True, "result": result}
    except ConfigError as e:
        return {"ok": False, "error": str(e), "key": e.key, "fix": e.fix}
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "error": str(e.args[0]) if e.args else type(e).__name__}
    except Exception as e:  # noqa: BLE001 - the control channel must answer, never kill the daemon
        log.exception("control command %s failed", cmd)
        return {"ok": False, "error": f"internal error: {e}"}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            req = json.loads(line)
        except json.JSONDecodeError:
            reply = {"ok": False, "error": "request is not valid JSON"}
        else:
            reply = handle_request(self.server.target, req)  # type: ignore[attr-defined]
        self.wfile.write((json.dumps(reply, default=str) + "\n").encode("utf-8"))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    def __init__(self, path: str | os.PathLike, target: Any):
        self.path = Path(path)
        self.target = target
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            # A stale socket from a killed daemon; refuse if another daemon still answers on it.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.path))
                raise RuntimeError(f"another ecg-edge daemon is running (control socket {self.path} answers)")
            except (ConnectionRefusedError, FileNotFoundError):
                self.path.unlink(missing_ok=True)
            finally:
                s.close()
        old = os.umask(0o117)
        try:
            self._server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        self._server.target = self.target  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.path.unlink(missing_ok=True)


def call(path: str | os.PathLike, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Client: send one command to a running daemon. Raises ConnectionError if none answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ConnectionError(f"no ecg-edge daemon answers on {path} ({e.strerror}); is it running? "
                                  "(pass the daemon's --config so the state directory matches)") from None
        s.sendall((json.dumps({"cmd": cmd, "args": args}) + "\n").encode("utf-8"))
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf)
    finally:
        s.close()
