"""MQTT helpers for the tests and benchmarks (no tests in here): a real subscriber that records what the
device publishes, a reader of retained messages, and a TCP proxy that cuts the link like a dead zone.
The device side of command tests is the real one (tests/device_helpers.py), not a stand-in."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

PREFIX = "ecg"


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
