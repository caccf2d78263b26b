"""The MQTT link: drains the durable outbox with QoS 1, serves fleet commands, publishes health.

Why this shape:
- paho keeps its offline queue in memory only; we keep ours in SQLite (outbox.py) and hand paho at most
  `max_inflight` rows at a time (drain.py). A row is deleted only when paho reports the PUBACK for its mid.
- paho's callbacks run on its network thread and hold paho's internal locks; they only enqueue events.
  A single sender thread owns the mid -> row map, so there is no lock ordering to get wrong.
- Commands and station messages arrive through the inbox (inbox.py), on their own worker threads, because a
  model install runs a self-test for seconds and must not stall keep-alives. The retained birth, config and
  telemetry are retained.py; the paho client's options link.py; system health health.py.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .commands import CommandProcessor
from .drain import OutboxDrain
from .health import system_health
from .inbox import Inbox
from .link import DISCLAIMER, OFFLINE, ONLINE, iso, make_client
from .outbox import Outbox, OutboxRefused, normalise_priority
from .retained import RetainedState
from .settings import MqttConfig
from .topics import SCHEMA_VERSION, Topics, check_device_id

if TYPE_CHECKING:
    from edge_app.command_router import DeviceControl
    from edge_app.model_store import ModelStore

log = logging.getLogger(__name__)

__all__ = ["Uplink", "DISCLAIMER"]


class Uplink:
    """One device's MQTT presence. Thread-safe public methods; start() once, stop() once."""

    def __init__(self, config: MqttConfig, device_id: str, outbox_path: str | os.PathLike,
                 control: DeviceControl | None = None, model_store: ModelStore | None = None,
                 on_delivered: Callable[[str], None] | None = None):
        self.config = config
        self.device_id = check_device_id(device_id)
        self.topics = Topics(config.prefix, device_id)
        self.outbox = Outbox(outbox_path, config.outbox_max_bytes, config.outbox_min_free_bytes)
        self.control = control
        self.model_store = model_store
        self.on_delivered = on_delivered
        self.commands = CommandProcessor(device_id, control, model_store, config.model_public_key,
                                         config.max_command_bytes)
        self.commands.router.on_model_changed = self._on_model_changed
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._no_more = threading.Event()  # stop() in progress: deliver what is in flight, send nothing new
        self._announce = threading.Event()  # (re)connected: the sender publishes birth and config/reported
        self._wake = threading.Event()
        self.drain = OutboxDrain(self.outbox, self.topics, config, self._count, self._delivered, self._set_error)
        self.inbox = Inbox(self.topics, self.commands, lambda: self._client, self._v5, self._count)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.retained = RetainedState(config, self.device_id, self.topics, control, model_store)
        self._pending_alarms: list[dict[str, Any]] = []  # technical alarms raised before the first connect
        self._started_at = time.time()
        self._last_full_alarm = 0.0
        self.counters = {"queued": 0, "delivered": 0, "historical_sent": 0, "refused": 0, "connects": 0,
                         "disconnects": 0, "commands": 0, "telemetry_sent": 0, "broker_refused": 0}
        self.last_error: str | None = None
        if self.outbox.quarantined:
            log.error("outbox %s was unreadable (%s); moved to %s and started empty -- export it with sqlite3",
                      outbox_path, self.outbox.quarantine_reason, self.outbox.quarantined)
            self._pending_alarms.append({"type": "technical", "code": "outbox_corrupt",
                                         "message": f"unreadable outbox moved to {self.outbox.quarantined}",
                                         "action": "results are still in the device's result store; "
                                                   "inspect the quarantined file"})

    # ---- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start draining the outbox."""
        if self._client is not None:
            raise RuntimeError("Uplink already started")
        for alarm in self._pending_alarms:
            self.publish_alarm(alarm, "none")
        self._pending_alarms.clear()
        self._client = make_client(self.config, self.device_id, self.topics)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.on_message = lambda client, userdata, msg: self.inbox.on_message(msg)
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s,
                                   **({"clean_start": True} if self._v5 else {}))
        self._client.loop_start()
        sender = threading.Thread(target=self._sender_loop, name="uplink-sender", daemon=True)
        sender.start()
        self._threads = [sender, *self.inbox.start(self._stop)]

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline), disconnect, close the outbox. Queued rows stay on disk.

        Before disconnecting it stops handing out new rows and waits (up to 2 s) for the PUBACKs of those in
        flight, so a clean restart does not resend them (a crash may: receivers dedupe by msg_id)."""
        self._no_more.set()
        deadline = time.monotonic() + min(2.0, timeout)
        while self.drain.inflight and self._connected.is_set() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self.inbox.stop()
        for thread in self._threads:
            thread.join(timeout)
        client = self._client
        if client is not None:
            if self._connected.is_set():
                try:
                    info = client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
                    info.wait_for_publish(timeout=2)
                except Exception as exc:  # already disconnected: the Last Will covers it
                    log.debug("offline notice not sent: %s", exc)
            client.disconnect()
            client.loop_stop()
        self._connected.clear()
        self.outbox.close()

    @property
    def _v5(self) -> bool:
        return self.config.protocol == "5"

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def _delivered(self, msg_id: str) -> None:
        if self.on_delivered is not None:
            self.on_delivered(msg_id)

    def _set_error(self, message: str) -> None:
        self.last_error = message

    # ---- public API ----------------------------------------------------------------------------------
    def publish_result(self, result: dict[str, Any], priority: str) -> str:
        """Queue a triage result durably; returns its message id once it is fsync'd (then sends it ASAP).

        Raises OutboxFull when the disk budget is spent (and publishes a technical alarm, not durable).
        """
        return self._enqueue("triage", "result", result, priority)

    def publish_alarm(self, alarm: dict[str, Any], priority: str) -> str:
        """Queue a physiological or technical alarm durably; same guarantees as publish_result."""
        return self._enqueue("alarm", "alarm", alarm, priority)

    def publish_event(self, event: dict[str, Any], priority: str = "low") -> str:
        """Queue a device event durably on `<prefix>/<device_id>/event` (daemon started/stopped, stream gap):
        what a remote consumer needs to account for every stretch of signal. Same guarantees as publish_result."""
        return self._enqueue("event", "event", event, priority)

    def _enqueue(self, kind: str, field: str, content: dict[str, Any], priority: str) -> str:
        if not isinstance(content, dict):
            raise TypeError(f"{field} must be a dict, got {type(content).__name__}")
        p = normalise_priority(priority)
        now = time.time()
        msg_id = uuid.uuid4().hex
        body = {"schema": f"ecg.{kind}/{SCHEMA_VERSION}", "msg_id": msg_id, "device_id": self.device_id,
                "priority": p, "created_at": iso(now), "disclaimer": DISCLAIMER, field: content}
        try:
            self.outbox.put(kind, body, p, offline=not self._connected.is_set(), msg_id=msg_id, created=now)
        except OutboxRefused as exc:         # full, or the disk failed the write (OutboxWriteError)
            with self._lock:
                self.counters["refused"] += 1
            self._raise_outbox_full(exc)
            raise
        with self._lock:
            self.counters["queued"] += 1
        self._wake.set()
        return msg_id

    def publish_strip(self, strip: dict[str, Any], priority: str) -> str:
        """Queue a result's 12-lead strip (edge_app.uplink.strip_codec.encode_strip) durably on
        `<prefix>/<device_id>/strip`. Call it right after publish_result with the same priority: the outbox
        keeps production order within a priority, so the strip follows its result. Same guarantees."""
        return self._enqueue("strip", "strip", strip, priority)

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Receive messages on one exact topic of this device's subtree (QoS 1), e.g. the station's receipts.

        Subscribed at once if connected, and again on every (re)connect. `handler(topic, payload)` runs on
        the uplink's own inbound thread (never paho's), one message at a time; it must not raise for bad
        input (a raise is logged and the message dropped)."""
        if not topic.startswith(self.topics.base + "/") or "+" in topic or "#" in topic:
            raise ValueError(f"subscribe: {topic!r} is not an exact topic under {self.topics.base}/")
        self.inbox.add_handler(topic, handler)
        client = self._client
        if client is not None and self._connected.is_set():
            client.subscribe(topic, qos=1)

    def publish_telemetry(self, metrics: dict[str, Any], now: bool = True) -> None:
        """Merge the daemon's latest metrics into telemetry (retained, QoS 0, latest only).

        now=True publishes on the sender's next turn; now=False only refreshes what the next periodic
        telemetry (every telemetry_interval_s) will carry, so frequent updates do not flood the broker."""
        self.retained.merge_telemetry(metrics)
        if now:
            self.retained.last_telemetry = 0.0  # the sender publishes on its next turn
            self._wake.set()

    def set_birth(self, info: dict[str, Any]) -> None:
        """Set what the birth message says (model, front end, config version...). Republished at once if online."""
        self.retained.set_birth(info)
        if self._connected.is_set():
            self._publish_birth()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = dict(self.counters)
        try:
            outbox: dict[str, Any] = self.outbox.summary()
        except sqlite3.ProgrammingError:  # stopped: the database is closed
            outbox = {"closed": True, "depth": self.outbox.depth()}
        return {"connected": self._connected.is_set(), "host": self.config.host, "port": self.config.port,
                "device_id": self.device_id, "inflight": len(self.drain.inflight), "outbox": outbox,
                "last_error": self.last_error, **counters}

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_drained(self, timeout: float) -> bool:
        """Block until the outbox is empty and nothing is in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0 and not self.drain.inflight:
                return True
            time.sleep(0.02)
        return False

    # ---- paho callbacks (network thread: enqueue only) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.warning("MQTT connect to %s:%s refused: %s", self.config.host, self.config.port, reason_code)
            return
        with self._lock:
            self.counters["connects"] += 1
        log.info("MQTT connected to %s:%s", self.config.host, self.config.port)
        for topic in self.inbox.subscriptions():
            client.subscribe(topic, qos=1)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self.drain.reconnected()
        self._connected.set()
        self._announce.set()  # birth + config/reported from the sender thread: no daemon calls on paho's thread
        self.retained.last_telemetry = 0.0
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach broker {self.config.host}:{self.config.port}; retrying with backoff"
        log.debug("%s", self.last_error)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason_code: ReasonCode,
                       properties: Properties | None) -> None:
        if self._connected.is_set():
            with self._lock:
                self.counters["disconnects"] += 1
        self._connected.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT link lost (%s); results stay queued on disk", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        # MQTT 5 brokers may PUBACK with a failure (e.g. 0x87 not authorized): that is NOT a delivery.
        failed = bool(getattr(reason_code, "is_failure", False))
        self.drain.acked(mid, failed, str(reason_code))
        self._wake.set()

    # ---- sender --------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self.drain.process_acks()
                if self._connected.is_set() and self._announce.is_set():
                    self._announce.clear()
                    self._publish_birth()
                    self._publish_config_reported(None)
                if self._connected.is_set() and not self._no_more.is_set() and not self.drain.resuming():
                    if self._client is not None:
                        self.drain.fill(self._client)
                    if self.retained.telemetry_due():
                        self._publish_telemetry()
            except Exception as exc:  # keep draining whatever happens; the rows are safe on disk
                self.last_error = f"sender: {type(exc).__name__}: {exc}"
                log.exception("uplink sender error")
                time.sleep(0.5)
        try:
            self.drain.process_acks()
        except Exception:
            log.exception("final ack processing failed")

    # ---- retained state (edge_app/uplink/retained.py) --------------------------------------------------
    def _publish_birth(self) -> None:
        if self._client is not None:
            self.retained.publish_birth(self._client)

    def report_config(self, config: dict[str, Any]) -> None:
        """The device's effective configuration changed: republish the retained config/reported (if online;
        every (re)connect publishes it anyway)."""
        if self._connected.is_set():
            self._publish_config_reported(config)

    def _publish_config_reported(self, reported: dict[str, Any] | None) -> None:
        if self._client is not None:
            self.retained.publish_config_reported(self._client, reported)

    def _on_model_changed(self, report: dict[str, Any]) -> None:
        if self._connected.is_set():
            self._publish_birth()

    def _publish_telemetry(self) -> None:
        if self._client is None:
            return
        self.retained.publish_telemetry(self._client, {
            **system_health(os.path.dirname(os.path.abspath(self.outbox.path)), self._started_at),
            "outbox_depth": self.outbox.depth(), "outbox_bytes": self.outbox.used_bytes(),
            "inflight": len(self.drain.inflight)})
        self._count("telemetry_sent")

    def _raise_outbox_full(self, exc: OutboxRefused) -> None:
        """Technical alarm for a full outbox: sent directly (it cannot be queued), at most once a minute."""
        now = time.time()
        if now - self._last_full_alarm < 60 or self._client is None:
            return
        self._last_full_alarm = now
        log.error("outbox refused a message: %s", exc)
        doc = {"schema": f"ecg.alarm/{SCHEMA_VERSION}", "msg_id": uuid.uuid4().hex, "device_id": self.device_id,
               "priority": "none", "created_at": iso(now), "sent_at": iso(now), "historical": False, "seq": None,
               "age_s": 0.0,
               "disclaimer": DISCLAIMER,
               "alarm": {"type": "technical", "code": exc.alarm_code, "message": str(exc),
                         "action": "restore the uplink or free disk space; results are kept on the device"}}
        self._client.publish(self.topics.alarm, json.dumps(doc, separators=(",", ":")), qos=1)
