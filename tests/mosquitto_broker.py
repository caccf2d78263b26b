"""Start a REAL /usr/sbin/mosquitto on a free loopback port with a generated config (test helper).

Why: the uplink's guarantees (PUBACK-gated delivery, retained state, Last Will, TLS, ACLs) only mean something
against a real broker. Other test authors may reuse this:

    with MosquittoBroker(tmp_path) as broker:
        ... broker.port ...
        broker.stop(); broker.start()   # simulate an outage on the same port

Options: tls (dict with cafile/certfile/keyfile/require_certificate), password_file, acl_file, extra lines.
Skips the calling test (pytest.skip) when mosquitto is not installed.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def mosquitto_path() -> str | None:
    if os.path.exists(MOSQUITTO):
        return MOSQUITTO
    return shutil.which("mosquitto")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoBroker:
    def __init__(self, workdir: str | os.PathLike, port: int | None = None, *, tls: dict[str, Any] | None = None,
                 password_file: str | None = None, acl_file: str | None = None, allow_anonymous: bool | None = None,
                 extra: list[str] | None = None, persistence: bool = False, raw_config: str | None = None):
        """raw_config: run exactly this configuration text (e.g. deploy/mosquitto/mosquitto.conf with paths and
        ports substituted); `port` must then be one of its listeners (used to wait for readiness)."""
        self.binary = mosquitto_path()
        if self.binary is None:
            import pytest
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.password_file = password_file
        self.acl_file = acl_file
        self.allow_anonymous = (password_file is None and not (tls or {}).get("use_identity_as_username")) \
            if allow_anonymous is None else allow_anonymous
        self.extra = extra or []
        self.persistence = persistence
        self.raw_config = raw_config
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / f"mosquitto-{self.port}.conf"
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"

    def config_text(self) -> str:
        if self.raw_config is not None:
            text = self.raw_config
            if os.geteuid() == 0 and "\nuser " not in text:
                import pwd
                text += f"\nuser {pwd.getpwuid(0).pw_name}\n"
            return text
        lines = ["per_listener_settings false", f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "max_inflight_messages 100", "max_queued_messages 100000", "set_tcp_nodelay true",
                 "message_size_limit 0"]
        if os.geteuid() == 0:  # mosquitto would drop to user "mosquitto", who cannot write our temp dir
            import pwd
            lines.append(f"user {pwd.getpwuid(0).pw_name}")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        if self.tls:
            for key in ("cafile", "certfile", "keyfile"):
                lines.append(f"{key} {self.tls[key]}")
            if self.tls.get("require_certificate"):
                lines.append("require_certificate true")
            if self.tls.get("use_identity_as_username"):
                lines.append("use_identity_as_username true")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        lines += self.extra
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "MosquittoBroker":
        self.conf_path.write_text(self.config_text())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s: {self.log_text()[-2000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "MosquittoBroker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
