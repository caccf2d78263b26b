"""The uplink sink: results, alarms and device events go durably into the MQTT outbox.

Why the store is involved: the message id the outbox returns is kept in the result's index row, and the
uplink's delivery callback marks the result delivered, which is what lets retention delete it later.
A full outbox (OutboxFull) loses nothing: the result stays in the store, undelivered, and is logged.
Alarms continued from the previous run (`restored`) were published then and are not sent again.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge_app.messages import (AlarmChanged, DeviceEvent, DeviceInfoChanged, ResultReady, TelemetryUpdate)

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher
    from edge_app.storage import ResultStore
    from edge_app.uplink.service import Uplink

log = logging.getLogger(__name__)


class UplinkSink:
    def __init__(self, uplink: Uplink, store: ResultStore):
        self.uplink = uplink
        self.store = store
        uplink.on_delivered = self.on_delivered      # delivered -> the stored result may be deleted later

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(ResultReady, self.on_result)
        bus.subscribe(AlarmChanged, self.on_alarm)
        bus.subscribe(DeviceEvent, self.on_event)
        bus.subscribe(TelemetryUpdate, self.on_telemetry)
        bus.subscribe(DeviceInfoChanged, self.on_device_info)

    def queue_unsent(self) -> None:
        """Results committed before a crash but never handed to the outbox: queue them now (at start)."""
        for result in self.store.unqueued():
            self._queue_result(result)

    def on_result(self, msg: ResultReady) -> None:
        self._queue_result(msg.result)

    def _queue_result(self, result: dict[str, Any]) -> None:
        try:
            msg_id = self.uplink.publish_result(result, result.get("alarm_priority", "none"))
            self.store.set_msg_id(result["id"], msg_id)
        except Exception:  # noqa: BLE001 - OutboxFull etc.: the result stays in our store, undelivered
            log.exception("could not queue result %s for the uplink; kept in the store", result["id"])

    def on_alarm(self, msg: AlarmChanged) -> None:
        if msg.restored:
            return
        try:
            self.uplink.publish_alarm(msg.to_dict(), msg.alarm.priority)
        except Exception:  # noqa: BLE001 - the audit log still has it
            log.exception("could not queue alarm %s", msg.alarm.id)

    def on_event(self, msg: DeviceEvent) -> None:
        try:
            self.uplink.publish_event(msg.event, msg.priority)
        except Exception:  # noqa: BLE001 - OutboxFull etc.: the audit log still has it
            log.exception("could not queue event %s for the uplink", msg.event.get("code"))

    def on_telemetry(self, msg: TelemetryUpdate) -> None:
        self.uplink.publish_telemetry(msg.metrics, now=msg.now)

    def on_device_info(self, msg: DeviceInfoChanged) -> None:
        self.uplink.set_birth(msg.info)

    def on_delivered(self, msg_id: str) -> None:
        """The uplink's delivery callback: the result is delivered, so retention may delete it."""
        result_id = self.store.mark_delivered_msg(msg_id)
        if result_id:
            log.debug("result %s delivered", result_id)
