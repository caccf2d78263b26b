"""The device's operations: what the crew, the bedside page and fleet admins can ask the device to do.

Why one class: the control socket (edge_app/control_socket.py), MQTT commands (edge_app/uplink/commands.py)
and the bedside page (edge_app/display/hub.py) all reach the device through the command router
(edge_app/command_router.py), which calls these methods. So a patient context set from the page is validated,
audited, persisted and shown on MQTT exactly like one set by a fleet admin. Implements
edge_app.command_router.DeviceControl.

Every method returns JSON-serialisable data (the command reply's result). Invalid input raises ConfigError
(config keys), ValueError (patient), KeyError (unknown alarm) or StateConflict (alarm already acknowledged)
and changes nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

from edge_app.messages import ConfigChanged, PatientChanged
from edge_app.patient import validate_patient
from edge_app.results import PatientContext

if TYPE_CHECKING:
    from edge_app.config import Config
    from edge_app.device_state import DeviceState
    from edge_app.dispatcher import Dispatcher
    from edge_app.storage import ResultStore

log = logging.getLogger(__name__)


class DeviceOperations:
    """`status` and `apply_config` come from whoever runs the device (the daemon: its full status, and the
    pipeline taking new settings); without them (no data path running) status reports the state directory's
    view and a configuration change only updates the store's limits."""

    def __init__(self, state: DeviceState, bus: Dispatcher, status: Callable[[], dict[str, Any]] | None = None,
                 apply_config: Callable[[Config], None] | None = None):
        self.state = state
        self.runtime = state.runtime
        self.patient = state.patient
        self.alarm_latch = state.alarms
        self.store = state.store
        self.audit = state.audit
        self.bus = bus
        self._status = status or self._state_status
        self._apply_config = apply_config or self._apply_store_limits
        self._lock = threading.Lock()

    def _state_status(self) -> dict[str, Any]:
        return {"state": "idle", "device_id": self.runtime.current.device_id, "patient": self.get_patient(),
                "alarms_active": self.alarm_latch.active_alarms(), "store": self.store.stats(),
                "config_version": self.runtime.version(), "notice": "Triage aid, not a diagnosis"}

    def _apply_store_limits(self, cfg: Config) -> None:
        apply_store_limits(self.store, cfg)

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
        reported = self.get_config()
        self.bus.publish(ConfigChanged(reported))       # config/reported on MQTT, whichever way it came
        return reported

    def get_patient(self) -> dict[str, Any]:
        return self.patient.get().to_dict()

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


def apply_store_limits(store: ResultStore, cfg: Config) -> None:
    """The result store's limits follow the runtime configuration."""
    store.max_bytes = int(cfg.get("storage.max_bytes"))
    store.retention_days = float(cfg.get("storage.retention_days"))
    store.keep_strips = bool(cfg.get("storage.keep_strips"))
