"""The uplink sink: results, alarms and device events go durably into the MQTT outbox.

Why the store is involved: the message id the outbox returns is kept in the result's index row, and the
uplink's delivery callback marks the result delivered, which is what lets retention delete it later.
A refused outbox write loses nothing: the result stays in the store, undelivered, and is queued again later.
Refused means full (OutboxFull, budget or free space) or failed by the disk (OutboxWriteError: I/O error, disk
full below SQLite). Either raises a technical alarm through the alarm latch (code `outbox_full` or
`outbox_write_failed`: on the bedside page, audited) that clears once every stored result is queued again;
while it is active, every new result and every status tick (5 s) retries the results still unqueued.
Alarms continued from the previous run (`restored`) were published then and are not sent again.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge_app.messages import (AlarmChanged, ConfigChanged, DeviceEvent, DeviceInfoChanged, ResultReady,
                               StatusTick, TelemetryUpdate)
from edge_app.uplink.outbox import OutboxRefused

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from edge_app.dispatcher import Dispatcher
    from edge_app.storage import ResultStore
    from edge_app.uplink.service import Uplink

log = logging.getLogger(__name__)


OUTBOX_ALARM_CODES = ("outbox_full", "outbox_write_failed", "outbox_refused")


class UplinkSink:
    def __init__(self, uplink: Uplink, store: ResultStore, alarms: AlarmLatch | None = None):
        self.uplink = uplink
        self.store = store
        self.alarms = alarms
        self.failing: str | None = None               # alarm code while results wait for a working outbox
        uplink.on_delivered = self.on_delivered      # delivered -> the stored result may be deleted later

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(ResultReady, self.on_result)
        bus.subscribe(AlarmChanged, self.on_alarm)
        bus.subscribe(DeviceEvent, self.on_event)
        bus.subscribe(TelemetryUpdate, self.on_telemetry)
        bus.subscribe(DeviceInfoChanged, self.on_device_info)
        bus.subscribe(StatusTick, self.on_status_tick)
        bus.subscribe(ConfigChanged, self.on_config)

    def queue_unsent(self) -> bool:
        """Results in the store never handed to the outbox (a crash between store and outbox, or a refused
        outbox write): queue them now, oldest first, stopping at the first refusal. True when none is left."""
        for result in self.store.unqueued():
            if not self._queue_result(result):
                return False
        self._outbox_ok()
        return True

    def on_result(self, msg: ResultReady) -> None:
        if self.failing:                              # earlier results first (the store already holds this one)
            self.queue_unsent()
        else:
            self._queue_result(msg.result)

    def on_config(self, msg: ConfigChanged) -> None:
        """A configuration change (from MQTT or the control socket): the retained config/reported follows."""
        self.uplink.report_config(msg.config)

    def on_status_tick(self, msg: StatusTick) -> None:
        if self.failing:
            self.queue_unsent()

    def _queue_result(self, result: dict[str, Any]) -> bool:
        try:
            msg_id = self.uplink.publish_result(result, result.get("alarm_priority", "none"))
        except OutboxRefused as exc:
            self._outbox_refused(exc, result["id"])
            return False
        except Exception:  # noqa: BLE001 - e.g. an unencodable result: it stays in our store, undelivered
            log.exception("could not queue result %s for the uplink; kept in the store", result["id"])
            return False
        self.store.set_msg_id(result["id"], msg_id)
        return True

    def _outbox_refused(self, exc: OutboxRefused, result_id: str) -> None:
        """One alarm per outage: the first refusal names it (full or write failed); it lasts until recovery."""
        if self.failing:
            log.debug("result %s still not queued: %s", result_id, exc)
            return
        code = getattr(exc, "alarm_code", "outbox_refused")
        log.error("could not queue result %s for the uplink (kept in the store, retried): %s", result_id, exc)
        if self.alarms is not None:
            self.alarms.raise_condition(code, "technical", "medium",
                                        f"results are not being queued for transmission: {exc}. They are "
                                        "kept on the device and sent when the outbox works again.")
        self.failing = code

    def _outbox_ok(self) -> None:
        if self.failing:
            log.info("outbox accepts results again; every stored result is queued")
            if self.alarms is not None:
                self.alarms.clear_condition(self.failing)
            self.failing = None

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
