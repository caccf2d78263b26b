"""The MQTT link: drains the durable outbox with QoS 1, serves fleet commands, publishes health.

Why this shape:
- paho keeps its offline queue in memory only; we keep ours in SQLite (outbox.py) and hand paho at most
  `max_inflight` rows at a time. A row is deleted only when paho reports the PUBACK for its mid.
- paho's callbacks run on its network thread and hold paho's internal locks; they only enqueue events.
  A single sender thread owns the mid -> row map, so there is no lock ordering to get wrong.
- Commands run on their own worker thread, because a model install runs a self-test for seconds and
  must not stall keep-alives.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import socket
import sqlite3
import ssl
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .commands import CommandProcessor
from .outbox import Outbox, OutboxFull, QueuedMessage, normalise_priority
from .settings import MqttConfig
from .topics import COMMANDS, SCHEMA_VERSION, Topics, check_device_id

if TYPE_CHECKING:
    from edge_app.command_router import DeviceControl
    from edge_app.model_store import ModelStore

log = logging.getLogger(__name__)

DISCLAIMER = "Triage aid, not a diagnosis. A clinician must read the ECG."
ONLINE, OFFLINE = b"online", b"offline"
#: After a broker refuses a message (MQTT 5 PUBACK failure), wait this long before offering it again.
REFUSED_RETRY_S = 30.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def software_version() -> str:
    try:
        from edge_app import __version__
        return __version__
    except Exception:  # pragma: no cover - package always has it
        return "unknown"


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
        self.commands.router.on_config_reported = self._on_config_reported
        self.commands.router.on_model_changed = self._on_model_changed
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._no_more = threading.Event()  # stop() in progress: deliver what is in flight, send nothing new
        self._announce = threading.Event()  # (re)connected: the sender publishes birth and config/reported
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._deferred: dict[int, float] = {}  # seq -> monotonic time before which it is not resent
        self._inflight: dict[int, QueuedMessage] = {}  # paho mid -> row; sender thread only
        self._resume_since: float | None = None  # set on (re)connect, see _resuming()
        self._cmd_queue: queue.Queue[tuple[str, bytes, Any] | None] = queue.Queue(maxsize=16)
        #: station -> device topics (receipts, reviews): exact topic -> handler(topic, payload), see subscribe()
        self._inbound: dict[str, Callable[[str, bytes], None]] = {}
        # a station re-sends up to a few hundred receipts when the device (re)connects (docs/mqtt.md): room for them
        self._inbound_queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=2048)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._birth_extra: dict[str, Any] = {}
        self._pending_alarms: list[dict[str, Any]] = []  # technical alarms raised before the first connect
        self._telemetry_extra: dict[str, Any] = {}
        self._started_at = time.time()
        self._last_telemetry = 0.0
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
        self._client = self._make_client()
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s,
                                   **({"clean_start": True} if self._v5 else {}))
        self._client.loop_start()
        for target, name in ((self._sender_loop, "uplink-sender"), (self._command_loop, "uplink-commands"),
                             (self._inbound_loop, "uplink-inbound")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline), disconnect, close the outbox. Queued rows stay on disk.

        Before disconnecting it stops handing out new rows and waits (up to 2 s) for the PUBACKs of those in
        flight, so a clean restart does not resend them (a crash may: receivers dedupe by msg_id)."""
        self._no_more.set()
        deadline = time.monotonic() + min(2.0, timeout)
        while self._inflight and self._connected.is_set() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        for q in (self._cmd_queue, self._inbound_queue):
            try:
                q.put_nowait(None)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(timeout)
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

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client_id = cfg.client_id or f"{cfg.prefix}-{self.device_id}"
        if self._v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                 clean_session=True)
        # paho's own logger reports every failed reconnect at ERROR; in a dead zone that is noise, so
        # link state is logged once per transition by our callbacks instead.
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.read_password() or None)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

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
        except OutboxFull as exc:
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
        self._inbound = {**self._inbound, topic: handler}      # copy-on-write: paho's thread reads it
        client = self._client
        if client is not None and self._connected.is_set():
            client.subscribe(topic, qos=1)

    def publish_telemetry(self, metrics: dict[str, Any], now: bool = True) -> None:
        """Merge the daemon's latest metrics into telemetry (retained, QoS 0, latest only).

        now=True publishes on the sender's next turn; now=False only refreshes what the next periodic
        telemetry (every telemetry_interval_s) will carry, so frequent updates do not flood the broker."""
        with self._lock:
            self._telemetry_extra.update(metrics)
        if now:
            self._last_telemetry = 0.0  # the sender publishes on its next turn
            self._wake.set()

    def set_birth(self, info: dict[str, Any]) -> None:
        """Set what the birth message says (model, front end, config version...). Republished at once if online."""
        with self._lock:
            self._birth_extra.update(info)
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
                "device_id": self.device_id, "inflight": len(self._inflight), "outbox": outbox,
                "last_error": self.last_error, **counters}

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_drained(self, timeout: float) -> bool:
        """Block until the outbox is empty and nothing is in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0 and not self._inflight:
                return True
            time.sleep(0.02)
        return False

    # ---- paho callbacks (network thread: enqueue only) -----------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.warning("MQTT connect to %s:%s refused: %s", self.config.host, self.config.port, reason_code)
            return
        with self._lock:
            self.counters["connects"] += 1
        log.info("MQTT connected to %s:%s", self.config.host, self.config.port)
        client.subscribe(self.topics.cmd_filter, qos=1)
        for topic in self._inbound:
            client.subscribe(topic, qos=1)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self._resume_since = time.monotonic()
        self._connected.set()
        self._announce.set()  # birth + config/reported from the sender thread: no daemon calls on paho's thread
        self._last_telemetry = 0.0
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach broker {self.config.host}:{self.config.port}; retrying with backoff"
        log.debug("%s", self.last_error)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self._connected.is_set():
            with self._lock:
                self.counters["disconnects"] += 1
        self._connected.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT link lost (%s); results stay queued on disk", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # MQTT 5 brokers may PUBACK with a failure (e.g. 0x87 not authorized): that is NOT a delivery.
        failed = bool(getattr(reason_code, "is_failure", False))
        self._acks.put((mid, failed, str(reason_code)))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic in self._inbound:
            try:
                self._inbound_queue.put_nowait((msg.topic, bytes(msg.payload)))
            except queue.Full:  # the station re-sends (docs/mqtt.md); never block paho's thread
                log.error("inbound queue full; dropped a message on %s", msg.topic)
            return
        name = self.topics.command_name(msg.topic)
        if name is None:
            return
        try:
            self._cmd_queue.put_nowait((name, bytes(msg.payload), getattr(msg, "properties", None)))
        except queue.Full:
            reply = self.commands.reply(name, _correlation(msg), ok=False,
                                         error={"code": "busy", "message": "too many commands queued; retry later"})
            self._send_reply(name, reply, getattr(msg, "properties", None))

    # ---- sender --------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._process_acks()
                if self._connected.is_set() and self._announce.is_set():
                    self._announce.clear()
                    self._publish_birth()
                    self._publish_config_reported(None)
                if self._connected.is_set() and not self._no_more.is_set() and not self._resuming():
                    self._fill_inflight()
                    if time.time() - self._last_telemetry >= self.config.telemetry_interval_s:
                        self._publish_telemetry()
            except Exception as exc:  # keep draining whatever happens; the rows are safe on disk
                self.last_error = f"sender: {type(exc).__name__}: {exc}"
                log.exception("uplink sender error")
                time.sleep(0.5)
        try:
            self._process_acks()
        except Exception:
            log.exception("final ack processing failed")

    def _resuming(self) -> bool:
        """After a reconnect paho re-sends the rows that were in flight when the link dropped, right after
        on_connect returns. Hand out nothing new until those are acknowledged (or 5 s passed), otherwise a
        newer row could overtake an older one of the same priority."""
        if self._resume_since is None:
            return False
        if not self._inflight or time.monotonic() - self._resume_since > 5.0:
            self._resume_since = None
            return False
        return True

    def _process_acks(self) -> None:
        delivered: list[QueuedMessage] = []
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            msg = self._inflight.pop(mid, None)
            if msg is None:
                continue
            if failed:
                # Keep the row; retry later. The broker refused it (ACL, quota): say so, do not drop it.
                self._deferred[msg.seq] = time.monotonic() + REFUSED_RETRY_S
                self.last_error = f"broker refused message {msg.msg_id}: {reason}"
                with self._lock:
                    self.counters["broker_refused"] += 1
                log.error("broker refused %s on %s: %s (kept in the outbox, retry in %ss)",
                          msg.msg_id, msg.kind, reason, REFUSED_RETRY_S)
                continue
            delivered.append(msg)
        if not delivered:
            return
        self.outbox.remove(m.seq for m in delivered)
        with self._lock:
            self.counters["delivered"] += len(delivered)
        if self.on_delivered:
            for m in delivered:
                try:
                    self.on_delivered(m.msg_id)
                except Exception:
                    log.exception("on_delivered callback failed")

    def _fill_inflight(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        now_m = time.monotonic()
        for seq in [s for s, t in self._deferred.items() if t <= now_m]:
            del self._deferred[seq]
        in_flight = {m.seq for m in self._inflight.values()} | set(self._deferred)
        client = self._client
        assert client is not None
        now = time.time()
        for msg in self.outbox.next_batch(room, in_flight):
            body = dict(msg.body)
            historical = msg.offline or (now - msg.created) > self.config.historical_after_s
            body.update(seq=msg.seq, sent_at=iso(now), historical=historical,
                        age_s=round(max(0.0, now - msg.created), 3))
            topic = {"triage": self.topics.triage, "event": self.topics.event,
                     "strip": self.topics.strip}.get(msg.kind, self.topics.alarm)
            info = client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)
            if info.mid in self._inflight:  # cannot happen with <= 65535 in flight; be loud if it does
                log.error("mid %s reused while in flight", info.mid)
            self._inflight[info.mid] = msg
            if historical:
                with self._lock:
                    self.counters["historical_sent"] += 1
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # link just dropped: paho keeps it queued and resends on reconnect

    # ---- retained state ------------------------------------------------------------------------------
    def _publish_birth(self) -> None:
        client = self._client
        if client is None:
            return
        with self._lock:
            extra = dict(self._birth_extra)
        birth: dict[str, Any] = {"schema": f"ecg.birth/{SCHEMA_VERSION}", "device_id": self.device_id,
                                 "ts": iso(time.time()), "software_version": software_version(),
                                 "capabilities": list(COMMANDS), "protocol": "mqtt5" if self._v5 else "mqtt3.1.1",
                                 "max_command_bytes": self.config.max_command_bytes,
                                 "disclaimer": DISCLAIMER}
        if self.model_store is not None:
            try:
                birth["model"] = self.model_store.active_info()
            except Exception as exc:
                birth["model"] = {"error": str(exc)}
        birth.update(extra)
        client.publish(self.topics.birth, json.dumps(birth, separators=(",", ":")), qos=1, retain=True)

    def _on_config_reported(self, reported: dict[str, Any] | None) -> None:
        self._publish_config_reported(reported)

    def _publish_config_reported(self, reported: dict[str, Any] | None) -> None:
        client = self._client
        if client is None or self.control is None:
            return
        try:
            config = reported if reported is not None else self.control.get_config()
        except Exception as exc:
            log.warning("cannot read config for config/reported: %s", exc)
            return
        doc = {"schema": f"ecg.config/{SCHEMA_VERSION}", "device_id": self.device_id, "ts": iso(time.time()),
               "config_version": config.get("config_version"), "config": config}
        client.publish(self.topics.config_reported, json.dumps(doc, separators=(",", ":"), default=str),
                       qos=1, retain=True)

    def _on_model_changed(self, report: dict[str, Any]) -> None:
        if self._connected.is_set():
            self._publish_birth()

    def _publish_telemetry(self) -> None:
        client = self._client
        if client is None:
            return
        self._last_telemetry = time.time()
        with self._lock:
            extra = dict(self._telemetry_extra)
        doc = {"schema": f"ecg.telemetry/{SCHEMA_VERSION}", "device_id": self.device_id, "ts": iso(time.time()),
               **system_health(os.path.dirname(os.path.abspath(self.outbox.path)), self._started_at),
               "outbox_depth": self.outbox.depth(), "outbox_bytes": self.outbox.used_bytes(),
               "inflight": len(self._inflight)}
        doc.update(extra)
        client.publish(self.topics.telemetry, json.dumps(doc, separators=(",", ":"), default=str), qos=0, retain=True)
        with self._lock:
            self.counters["telemetry_sent"] += 1

    def _raise_outbox_full(self, exc: OutboxFull) -> None:
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
               "alarm": {"type": "technical", "code": "outbox_full", "message": str(exc),
                         "action": "restore the uplink or free disk space; results are kept on the device"}}
        self._client.publish(self.topics.alarm, json.dumps(doc, separators=(",", ":")), qos=1)

    # ---- commands ------------------------------------------------------------------------------------
    def _command_loop(self) -> None:
        while not self._stop.is_set():
            item = self._cmd_queue.get()
            if item is None:
                break
            name, payload, props = item
            corr = getattr(props, "CorrelationData", None) if props is not None else None
            reply = self.commands.handle(name, payload, corr)
            with self._lock:
                self.counters["commands"] += 1
            self._send_reply(name, reply, props)

    def _inbound_loop(self) -> None:
        while not self._stop.is_set():
            item = self._inbound_queue.get()
            if item is None:
                break
            topic, payload = item
            handler = self._inbound.get(topic)
            try:
                if handler is not None:
                    handler(topic, payload)
            except Exception:  # noqa: BLE001 - a bad message must not stop the link
                log.exception("handler for %s failed; message dropped", topic)

    def _send_reply(self, name: str, reply: dict[str, Any], req_props: Any) -> None:
        client = self._client
        if client is None:
            return
        topic = self.topics.reply(name)
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            rt = getattr(req_props, "ResponseTopic", None) if req_props is not None else None
            # Honour a response topic only inside our own subtree: the ACL forbids anything else anyway.
            if rt and rt.startswith(self.topics.base + "/") and "#" not in rt and "+" not in rt:
                topic = rt
            corr = getattr(req_props, "CorrelationData", None) if req_props is not None else None
            if corr:
                props.CorrelationData = corr
        data = json.dumps(reply, separators=(",", ":"), default=str)
        client.publish(topic, data, qos=1, properties=props)


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Disable Nagle: a command reply (or the next result) right after a PUBACK otherwise waits for the
    peer's delayed ACK, ~40 ms per round trip."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _correlation(msg: mqtt.MQTTMessage) -> str | None:
    props = getattr(msg, "properties", None)
    data = getattr(props, "CorrelationData", None) if props is not None else None
    if data:
        return data.decode("utf-8", "replace")
    return None


def system_health(disk_path: str, started_at: float) -> dict[str, Any]:
    """Uptime, CPU, memory, disk and temperature (when /sys/class/thermal exists) of this machine."""
    out: dict[str, Any] = {"uptime_s": round(time.time() - started_at, 1), "hostname": socket.gethostname()}
    try:
        import psutil
        out["cpu_percent"] = psutil.cpu_percent(interval=None)
        vm = psutil.virtual_memory()
        out["memory_percent"] = vm.percent
        out["memory_available_mb"] = round(vm.available / 2**20, 1)
        out["process_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    except Exception:
        try:
            out["load_1m"] = os.getloadavg()[0]
        except OSError:
            pass
    try:
        du = shutil.disk_usage(disk_path)
        out["disk_free_mb"] = round(du.free / 2**20, 1)
        out["disk_used_percent"] = round(100 * du.used / du.total, 1) if du.total else None
    except OSError:
        pass
    temps = []
    base = "/sys/class/thermal"
    if os.path.isdir(base):
        for zone in sorted(os.listdir(base)):
            try:
                with open(os.path.join(base, zone, "temp")) as fh:
                    temps.append(int(fh.read().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
    if temps:
        out["temperature_c"] = max(temps)
    return out
