"""The record sink: every result is stored (JSON + raw WFDB strip) and audited before anyone else sees it.

Why first in line: the uplink sink needs the stored result's index row (to remember the MQTT message id
that makes the result deletable once delivered), and a result that was shown or sent must also be on disk.
A store over its byte limit with only undelivered results left raises the `store_full` technical alarm
through the latch (nothing is deleted then).
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from edge_app.messages import ResultReady

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from edge_app.dispatcher import Dispatcher
    from edge_app.storage import AuditLog, ResultStore


class RecordSink:
    def __init__(self, store: ResultStore, audit: AuditLog, alarms: AlarmLatch):
        self.store = store
        self.audit = audit
        self.alarms = alarms

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(ResultReady, self.on_result)

    def on_result(self, msg: ResultReady) -> None:
        triage = msg.triage
        stored = self.store.put(msg.result, msg.strip_uv, msg.strip_fs)
        self.audit.append("result", {
            "id": triage.id, "level": triage.triage_level, "priority": triage.alarm_priority,
            "quality": triage.quality.verdict, "probabilities": triage.probabilities,
            "window": [triage.window.start_index, triage.window.end_index],
            "alarms": [alarm.id for alarm in triage.alarms], "model_sha256": triage.model.sha256,
            "json_sha256": hashlib.sha256(stored.json_path.read_bytes()).hexdigest()})
        if stored.full:
            self.alarms.raise_condition("store_full", "technical", "medium",
                                        f"Result store over its limit ({self.store.max_bytes} bytes) with only "
                                        "undelivered results left; nothing is deleted. Connect the uplink or export.")
        else:
            self.alarms.clear_condition("store_full")
