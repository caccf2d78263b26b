"""The device's operations: what the crew, the bedside page and fleet admins can ask the device to do.

Why one class: the control socket (edge_app/patient.py), MQTT commands (edge_app/uplink/commands.py) and the
bedside page (edge_app/display/server.py) all reach the device through the command router
(edge_app/command_router.py), which calls these methods. So a patient context set from the page is validated,
audited, persisted and shown on MQTT exactly like one set by a fleet admin. Implements
edge_app.uplink.control.DeviceControl.

Every method returns a JSON-serialisable dict (the command reply's result). Invalid input raises
ConfigError (config keys), ValueError (patient) or KeyError (unknown alarm) and changes nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

from edge_app.messages import PatientChanged
from edge_app.patient import validate_patient
from edge_app.results import PatientContext

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from edge_app.config import Config
    from edge_app.dispatcher import Dispatcher
    from edge_app.patient import PatientStore
    from edge_app.runtime_config import RuntimeConfig
    from edge_app.storage import AuditLog, ResultStore

log = logging.getLogger(__name__)


class DeviceOperations:
    def __init__(self, runtime: RuntimeConfig, patient: PatientStore, alarms: AlarmLatch, store: ResultStore,
                 audit: AuditLog, bus: Dispatcher, status: Callable[[], dict[str, Any]],
                 apply_config: Callable[[Config], None]):
        self.runtime = runtime
        self.patient = patient
        self.alarm_latch = alarms
        self.store = store
        self.audit = audit
        self.bus = bus
        self._status = status
        self._apply_config = apply_config
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        """Current health: front end, signal quality, model, counters, latency, alarms, store, uplink."""
        return self._status()

    def get_config(self) -> dict[str, Any]:
        return self.runtime.redacted()

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            diff = self.runtime.change(changes)                 # raises ConfigError; nothing applied then
            self._apply_config(self.runtime.current)
        self.audit.append("config_change", {"changes": {k: {"old": o, "new": n} for k, (o, n) in diff.items()},
                                            "config_version": self.runtime.version()})
        if any(k.startswith("patient.") for k in diff):     # [patient] changed remotely: it is the context now
            age, sex = self.runtime.current.patient
            self.set_patient(age, sex)
        log.info("configuration changed: %s", {k: n for k, (o, n) in diff.items()})
        return self.get_config()

    def set_patient(self, age: Any, sex: Any) -> dict[str, Any]:
        context = validate_patient(age, sex)
        self.patient.set(context)
        self.audit.append("patient_set", context.to_dict())
        self.bus.publish(PatientChanged(context.to_dict()))
        log.info("patient context set: %s", context.to_dict())
        return context.to_dict()

    def clear_patient(self) -> dict[str, Any]:
        context = self.patient.set(PatientContext())
        self.audit.append("patient_cleared", {})
        self.bus.publish(PatientChanged(context.to_dict()))
        log.info("patient context cleared (unknown age/sex)")
        return context.to_dict()

    def acknowledge_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        return self.alarm_latch.acknowledge(alarm_id, by).to_dict()

    def latest(self, n: int = 10) -> list[dict[str, Any]]:
        return self.store.latest(max(1, min(int(n), 100)))

    def alarms(self) -> list[dict[str, Any]]:
        """Recent alarms (oldest first), each with whether its condition is still active."""
        return self.alarm_latch.recent()

    def store_stats(self) -> dict[str, Any]:
        return self.store.stats()
