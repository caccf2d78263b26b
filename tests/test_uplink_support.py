"""Shared helpers for the uplink tests (no tests in here).

TestDeviceControl is a small but real implementation of edge_app.uplink.control.DeviceControl: it validates
and applies configuration atomically, keeps patient context and alarms, and records an audit trail, so the
tests can check that refused commands change nothing. It stands in for the daemon side only.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_app.errors import ConfigError

PREFIX = "ecg"


class TestDeviceControl:
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.config: dict[str, dict[str, Any]] = {
            "triage": {"mi_threshold": 0.5, "announce": True},
            "signal": {"mains_hz": 50},
        }
        self.config_version = 1
        self.patient: dict[str, Any] = {"age": None, "sex": None}
        self.alarms: dict[str, dict[str, Any]] = {"a1": {"id": "a1", "acknowledged_by": None}}
        self.audit: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"state": "running", "config_version": self.config_version, "patient": dict(self.patient),
                "open_alarms": [a for a, v in self.alarms.items() if v["acknowledged_by"] is None]}

    def get_config(self) -> dict[str, Any]:
        with self._lock:
            return {"config_version": self.config_version, **copy.deepcopy(self.config)}

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            new = copy.deepcopy(self.config)
            for dotted, value in changes.items():
                if not isinstance(dotted, str) or dotted.count(".") != 1:
                    raise ConfigError(str(dotted), "expected 'section.key'", "write e.g. triage.mi_threshold")
                section, key = dotted.split(".")
                if section not in new or key not in new[section]:
                    raise ConfigError(dotted, "unknown key", "use one of " + ", ".join(
                        f"{s}.{k}" for s in new for k in new[s]))
                old = new[section][key]
                if type(value) is not type(old):
                    raise ConfigError(dotted, f"expected {type(old).__name__}, got {value!r}", f"e.g. {old!r}")
                if dotted == "triage.mi_threshold" and not 0 < value < 1:
                    raise ConfigError(dotted, f"{value} is not a probability in (0, 1)", "use 0.5")
                if dotted == "signal.mains_hz" and value not in (50, 60):
                    raise ConfigError(dotted, f"{value} Hz mains does not exist", "use 50 or 60")
                new[section][key] = value
            self.config = new
            self.config_version += 1
            self.audit.append({"what": "config/set", "changes": changes, "version": self.config_version})
            return {"config_version": self.config_version, **copy.deepcopy(self.config)}

    def set_patient(self, age: float | None, sex: str | None) -> dict[str, Any]:
        self.patient = {"age": age, "sex": sex}
        self.audit.append({"what": "patient/set"})
        return dict(self.patient)

    def clear_patient(self) -> dict[str, Any]:
        self.patient = {"age": None, "sex": None}
        self.audit.append({"what": "patient/clear"})
        return dict(self.patient)

    def acknowledge_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        if alarm_id not in self.alarms:
            raise KeyError(alarm_id)
        self.alarms[alarm_id]["acknowledged_by"] = by
        self.audit.append({"what": "alarm/ack", "id": alarm_id, "by": by})
        return dict(self.alarms[alarm_id])


class Collector:
    """A real subscriber that records everything under a topic filter (to count deliveries)."""

    def __init__(self, port: int, topic_filter: str = "ecg/#", persistent: bool = False, **tls_kw: Any) -> None:
        """persistent=True keeps a broker-side session (needs MosquittoBroker(persistence=True)) so that
        messages published while this subscriber is reconnecting after a broker restart are still counted."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"collector-{time.monotonic_ns()}")
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if tls_kw.get("username"):
            self.client.username_pw_set(tls_kw["username"], tls_kw.get("password"))
        if tls_kw.get("ca_file"):
            self.client.tls_set(ca_certs=tls_kw["ca_file"], certfile=tls_kw.get("cert_file"),
                                keyfile=tls_kw.get("key_file"))
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        if persistent:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "collector could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, r in self.messages if t.endswith("/" + leaf)]

    def raw(self, leaf: str) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if m[0].endswith("/" + leaf)]

    def wait_for(self, leaf: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.on(leaf)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.on(leaf)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 3.0, **kw: Any) -> bytes | None:
    """The retained payload on a topic (None when nothing is retained)."""
    got: list[bytes] = []
    ev = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=f"ret-{time.monotonic_ns()}")
    if kw.get("username"):
        c.username_pw_set(kw["username"], kw.get("password"))

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            ev.set()

    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ev.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return got[-1] if got else None


class LinkCutter:
    """A loopback TCP proxy in front of the broker whose link can be cut (all connections dropped, new ones
    refused) and restored: an ambulance driving through a dead zone while the broker keeps running."""

    def __init__(self, upstream_port: int) -> None:
        import socket as _socket
        self._socket = _socket
        self.upstream_port = upstream_port
        with _socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._conns: list = []
        self._lock = threading.Lock()
        self._listener = None
        self.restore()

    def restore(self) -> None:
        s = self._socket.socket()
        s.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                up = self._socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.cut()
