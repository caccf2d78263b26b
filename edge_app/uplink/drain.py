"""The outbox drain: hands queued rows to paho (at most `max_inflight`), matches PUBACKs to rows, deletes
only what the broker acknowledged.

Why it is careful: paho keeps its in-flight messages in memory only. A row leaves the SQLite outbox only when
paho reports the PUBACK for its message id (a refused PUBACK, e.g. an ACL denial under MQTT 5, is NOT a
delivery: the row is kept and offered again after REFUSED_RETRY_S). After a reconnect paho re-sends what was
in flight; nothing new is handed out until those are acknowledged (or 5 s passed), so a newer row never
overtakes an older one of the same priority. Used by one thread only (the uplink's sender), except `acked`,
which paho's network thread calls.
"""
from __future__ import annotations

import json
import logging
import queue
import time
from typing import TYPE_CHECKING, Callable

import paho.mqtt.client as mqtt

from .link import iso

if TYPE_CHECKING:
    from edge_app.mqtt_settings import MqttConfig

    from .outbox import Outbox, QueuedMessage
    from .topics import Topics

log = logging.getLogger(__name__)
#: After a broker refuses a message (MQTT 5 PUBACK failure), wait this long before offering it again.
REFUSED_RETRY_S = 30.0
RESUME_WAIT_S = 5.0


class OutboxDrain:
    def __init__(self, outbox: Outbox, topics: Topics, config: MqttConfig, count: Callable[[str, int], None],
                 delivered: Callable[[str], None], error: Callable[[str], None]):
        self.outbox = outbox
        self.topics = topics
        self.config = config
        self._count = count                  # counters: delivered, broker_refused, historical_sent
        self._delivered = delivered          # msg_id acknowledged by the broker
        self._error = error                  # the uplink's last_error
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._deferred: dict[int, float] = {}           # seq -> monotonic time before which it is not resent
        self.inflight: dict[int, QueuedMessage] = {}    # paho mid -> row
        self._resume_since: float | None = None        # set on (re)connect, see resuming()

    def acked(self, mid: int, failed: bool, reason: str) -> None:
        """paho's network thread: a PUBACK (or a failed one) for message id `mid`."""
        self._acks.put((mid, failed, reason))

    def reconnected(self) -> None:
        self._resume_since = time.monotonic()

    def resuming(self) -> bool:
        """True while paho re-sends what was in flight at the last disconnect (hand out nothing new)."""
        if self._resume_since is None:
            return False
        if not self.inflight or time.monotonic() - self._resume_since > RESUME_WAIT_S:
            self._resume_since = None
            return False
        return True

    def process_acks(self) -> None:
        delivered: list[QueuedMessage] = []
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            message = self.inflight.pop(mid, None)
            if message is None:
                continue
            if failed:
                # Keep the row; retry later. The broker refused it (ACL, quota): say so, do not drop it.
                self._deferred[message.seq] = time.monotonic() + REFUSED_RETRY_S
                self._error(f"broker refused message {message.msg_id}: {reason}")
                self._count("broker_refused", 1)
                log.error("broker refused %s on %s: %s (kept in the outbox, retry in %ss)",
                          message.msg_id, message.kind, reason, REFUSED_RETRY_S)
                continue
            delivered.append(message)
        if not delivered:
            return
        self.outbox.remove(message.seq for message in delivered)
        self._count("delivered", len(delivered))
        for message in delivered:
            try:
                self._delivered(message.msg_id)
            except Exception:  # noqa: BLE001 - the row is gone from the outbox either way
                log.exception("on_delivered callback failed")

    def fill(self, client: mqtt.Client) -> None:
        """Hand paho the next rows (priority, then age) while there is room in flight."""
        room = self.config.max_inflight - len(self.inflight)
        if room <= 0:
            return
        now_m = time.monotonic()
        for seq in [seq for seq, not_before in self._deferred.items() if not_before <= now_m]:
            del self._deferred[seq]
        in_flight = {message.seq for message in self.inflight.values()} | set(self._deferred)
        now = time.time()
        for message in self.outbox.next_batch(room, in_flight):
            body = dict(message.body)
            historical = message.offline or (now - message.created) > self.config.historical_after_s
            body.update(seq=message.seq, sent_at=iso(now), historical=historical,
                        age_s=round(max(0.0, now - message.created), 3))
            topic = {"triage": self.topics.triage, "event": self.topics.event,
                     "strip": self.topics.strip}.get(message.kind, self.topics.alarm)
            info = client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)
            if info.mid in self.inflight:  # cannot happen with <= 65535 in flight; be loud if it does
                log.error("mid %s reused while in flight", info.mid)
            self.inflight[info.mid] = message
            if historical:
                self._count("historical_sent", 1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # link just dropped: paho keeps it queued and resends on reconnect
