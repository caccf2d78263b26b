"""One ingest worker: an MQTT 5 client in the station's shared subscription, writing to the database.

Why it is built this way:
- Shared subscription (`$share/<group>/<prefix>/+/triage` ...): the broker hands each durable message to ONE of
  the group's workers, so N workers on N hosts split one fleet without coordinating.
- Persistent session (fixed client id `<client_id_prefix>-<index>`, clean_start=False, Session Expiry): while a
  worker is down the broker keeps its queue; with manual acknowledgement the PUBACK is sent only after the
  database COMMIT, so a worker killed mid-batch gets the unacknowledged messages again (same msg_id) and the
  database's unique key turns at-least-once into exactly-once storage.
- Retained device state (availability, birth, telemetry, config/reported) is subscribed WITHOUT the share: MQTT 5
  does not send retained messages to shared subscriptions, and a station that starts later must still see the
  whole fleet. Every worker upserts it (idempotent); only worker 0 (the "leader") re-sends reviews and receipts
  on a device's birth and publishes new reviews, so a device does not get them N times.
- The database work runs in its own thread, in batches (one COMMIT for up to `batch` messages): the network
  loop keeps answering PINGs while SQLite fsyncs, and throughput is not bounded by one fsync per message.
"""
from __future__ import annotations

import logging
import queue
import signal
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..config import CloudConfig
from ..db.engine import make_engine, session_factory
from ..db.models import IngestWorkerState, Review, utcnow
from .store import DURABLE, STATE, Ingestor, Outcome, review_message

log = logging.getLogger(__name__)


def _upsert(factory: sessionmaker[Session]):
    from sqlalchemy.dialects import postgresql, sqlite
    return postgresql.insert if factory.kw["bind"].dialect.name == "postgresql" else sqlite.insert


def subscriptions(prefix: str, group: str) -> list[tuple[str, int]]:
    shared = [f"$share/{group}/{prefix}/+/{leaf}" for leaf in DURABLE]
    shared += [f"$share/{group}/{prefix}/+/cmd/+/reply", f"$share/{group}/{prefix}/+/cmd/+/+/reply"]
    plain = [f"{prefix}/+/{leaf}" for leaf in STATE]
    return [(t, 1) for t in shared + plain]


@dataclass
class _Item:
    topic: str
    payload: bytes
    mid: int
    qos: int


class IngestWorker:
    def __init__(self, cfg: CloudConfig, index: int = 0, *, factory: sessionmaker[Session] | None = None,
                 batch: int = 200, leader: bool | None = None):
        self.cfg, self.index, self.batch = cfg, index, batch
        self.leader = index == 0 if leader is None else leader
        self.client_id = f"{cfg.mqtt.client_id_prefix}-{index}"
        self._engine = None
        if factory is None:
            self._engine = make_engine(cfg.database_url)
            factory = session_factory(self._engine)
        self.factory = factory
        self.ingestor = Ingestor(cfg.mqtt.prefix, cfg.station.name, cfg.mqtt.max_payload_bytes, self.client_id)
        self._q: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._pending_reviews: dict[int, str] = {}
        self._acked_reviews: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        m = cfg.mqtt
        if m.username:
            c.username_pw_set(m.username, m.secret())
        if m.tls:
            c.tls_set(ca_certs=m.ca_file, certfile=m.cert_file or None, keyfile=m.key_file or None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(1, 30)
        self.client = c
        self.subscribed = threading.Event()
        self.started_at = utcnow()
        self._thread = threading.Thread(target=self._run_db, name=f"ingest-db-{index}", daemon=True)
        self._reviews_thread = threading.Thread(target=self._run_reviews, name=f"ingest-reviews-{index}", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> "IngestWorker":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.mqtt.session_expiry_s
        props.ReceiveMaximum = 1000
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.mqtt.keepalive_s,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        self._thread.start()
        if self.leader:
            self._reviews_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()
        if self._engine is not None:
            self._engine.dispose()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    # -- MQTT callbacks (network thread) ------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.error("broker refused %s: %s", self.client_id, reason_code)
            return
        client.subscribe(subscriptions(self.cfg.mqtt.prefix, self.cfg.mqtt.group))
        log.info("%s connected (session present: %s)", self.client_id, flags.session_present)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("%s: broker refused subscriptions: %s (check the ACL)", self.client_id, bad)
            return
        self.subscribed.set()
        self._heartbeat_due = 0.0

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("%s disconnected: %s (reconnecting)", self.client_id, reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        self._q.put(_Item(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        with self._lock:
            review_id = self._pending_reviews.pop(mid, None)
        if review_id and not reason_code.is_failure:
            self._acked_reviews.put(review_id)        # recorded by the reviews thread (no DB work in the network thread)

    # -- database thread --------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Record this worker's state and counters (the station's health page; readiness for tests)."""
        import os
        import socket
        ins = _upsert(self.factory)
        with self.factory() as s:
            values = dict(host=socket.gethostname()[:120], pid=os.getpid(), started_at=self.started_at,
                          heartbeat_at=utcnow(), subscribed=self.subscribed.is_set(),
                          counters=dict(self.ingestor.counters))
            s.execute(ins(IngestWorkerState).values(client_id=self.client_id, **values)
                      .on_conflict_do_update(index_elements=["client_id"], set_=values))
            s.commit()

    def _run_db(self) -> None:
        self._heartbeat_due = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= self._heartbeat_due:
                self._heartbeat_due = time.monotonic() + 5.0
                try:
                    self.heartbeat()
                except Exception as exc:          # noqa: BLE001 -- health reporting must not stop intake
                    log.warning("heartbeat not recorded: %s", exc)
            try:
                first = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            items = [first]
            while len(items) < self.batch:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            outcomes = None
            while not self._stop.is_set():
                try:
                    outcomes = self._commit_with_retry(items)
                    break
                except Exception:                  # noqa: BLE001 -- e.g. quarantining failed too: retry, never drop
                    log.exception("could not store a batch of %d; retrying (nothing acknowledged)", len(items))
                    time.sleep(1.0)
            if outcomes is None:        # stopping while the database was unreachable: nothing acknowledged
                return
            # Receipts are queued BEFORE the PUBACKs: paho writes packets in order, so a worker killed after
            # acknowledging has already handed the receipt to the broker; killed before, the broker redelivers
            # and the repeat is answered with a receipt again.
            self._after_commit(outcomes)
            for item in items:
                if item.qos > 0:
                    self.client.ack(item.mid, item.qos)

    def _commit_with_retry(self, items: list[_Item]) -> list[Outcome] | None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                return self._commit(items)
            except (OperationalError, DBAPIError) as exc:
                if getattr(exc, "connection_invalidated", False) or isinstance(exc, OperationalError):
                    log.error("database unavailable (%s); retrying in %.1fs, nothing acknowledged", exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                return self._one_by_one(items)
            except Exception:                      # noqa: BLE001 -- a bug must not stop the fleet's intake
                log.exception("batch failed; storing one by one")
                return self._one_by_one(items)
        return None

    def _commit(self, items: list[_Item]) -> list[Outcome]:
        with self.factory() as s:
            out = [self.ingestor.handle(s, it.topic, it.payload) for it in items]
            s.commit()
        return out

    def _one_by_one(self, items: list[_Item]) -> list[Outcome]:
        out = []
        for it in items:
            try:
                out += self._commit([it])
            except Exception as exc:               # noqa: BLE001
                log.exception("message on %s could not be stored; quarantining", it.topic)
                with self.factory() as s:
                    out.append(self.ingestor.quarantine(s, it.topic, it.payload, "internal",
                                                        f"{type(exc).__name__}: {exc}", None))
                    s.commit()
        return out

    def _after_commit(self, outcomes: list[Outcome]) -> None:
        import json
        for o in outcomes:
            for topic, doc in o.publish:
                self.client.publish(topic, json.dumps(doc, separators=(",", ":")), qos=1)
            if o.birth and self.leader and o.device_id:
                with self.factory() as s:
                    resend = self.ingestor.resend_for(s, o.device_id, self.cfg.ingest.resend_window_h)
                for topic, doc in resend:
                    self.client.publish(topic, json.dumps(doc, separators=(",", ":")), qos=1)

    # -- reviews to devices (leader only) -----------------------------------------------------------------
    def _run_reviews(self) -> None:
        """Publish every committed review not yet acknowledged by the broker (polls: the web app may run in
        another process or host; the review row is the durable outbox)."""
        import json
        while not self._stop.wait(0.3):
            try:
                acked = []
                while not self._acked_reviews.empty():
                    acked.append(self._acked_reviews.get_nowait())
                if acked:
                    with self.factory() as s:
                        s.execute(update(Review).where(Review.review_id.in_(acked), Review.published_at.is_(None))
                                  .values(published_at=utcnow()))
                        s.commit()
                if not self.connected.is_set():
                    continue
                with self.factory() as s:
                    todo = s.scalars(select(Review).where(Review.published_at.is_(None)).order_by(Review.id)
                                     .limit(100)).all()
                for rv in todo:
                    with self._lock:
                        if rv.review_id in self._pending_reviews.values():
                            continue
                    info = self.client.publish(f"{self.cfg.mqtt.prefix}/{rv.device_id}/review",
                                               json.dumps(review_message(rv), separators=(",", ":")), qos=1)
                    with self._lock:
                        self._pending_reviews[info.mid] = rv.review_id
            except Exception:                       # noqa: BLE001
                log.exception("review publisher")


def run_worker(cfg: CloudConfig, index: int) -> int:
    """`ecg-cloud ingest`: run one worker until SIGTERM/SIGINT."""
    import os
    parent = os.getppid()
    worker = IngestWorker(cfg, index).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    last = 0.0
    while not done.wait(1.0):
        if os.getppid() != parent:
            # The supervisor (`ecg-cloud serve`) died without stopping us: exit, or a restarted supervisor's worker
            # with the same client id would fight this orphan for the MQTT session.
            log.error("%s: parent process %d is gone; stopping", worker.client_id, parent)
            break
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("%s counters %s", worker.client_id, worker.ingestor.counters)
    worker.stop()
    return 0
