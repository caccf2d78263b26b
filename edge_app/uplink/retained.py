"""The device's retained state on the broker: birth, config/reported, telemetry.

Why retained: a dashboard that connects later (or restarts) must still learn who the device is (software,
model, front end, capabilities), its effective configuration and its health, without asking. Birth and
config/reported are republished on every (re)connect; telemetry every `telemetry_interval_s` (QoS 0, latest
only). What only the daemon knows is merged in: `set_birth(info)`, `merge_telemetry(metrics)`.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .link import DISCLAIMER, iso, software_version
from .topics import COMMANDS, SCHEMA_VERSION

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from edge_app.command_router import DeviceControl
    from edge_app.model_store import ModelStore
    from edge_app.mqtt_settings import MqttConfig

    from .topics import Topics

log = logging.getLogger(__name__)


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)


class RetainedState:
    def __init__(self, config: MqttConfig, device_id: str, topics: Topics, control: DeviceControl | None,
                 model_store: ModelStore | None):
        self.config = config
        self.device_id = device_id
        self.topics = topics
        self.control = control
        self.model_store = model_store
        self._lock = threading.Lock()
        self._birth_extra: dict[str, Any] = {}
        self._telemetry_extra: dict[str, Any] = {}
        self.last_telemetry = 0.0          # epoch time of the last telemetry publish (0: publish on the next turn)

    def set_birth(self, info: dict[str, Any]) -> None:
        with self._lock:
            self._birth_extra.update(info)

    def merge_telemetry(self, metrics: dict[str, Any]) -> None:
        with self._lock:
            self._telemetry_extra.update(metrics)

    def telemetry_due(self) -> bool:
        return time.time() - self.last_telemetry >= self.config.telemetry_interval_s

    def publish_birth(self, client: mqtt.Client) -> None:
        with self._lock:
            extra = dict(self._birth_extra)
        birth: dict[str, Any] = {"schema": f"ecg.birth/{SCHEMA_VERSION}", "device_id": self.device_id,
                                 "ts": iso(time.time()), "software_version": software_version(),
                                 "capabilities": list(COMMANDS),
                                 "protocol": "mqtt5" if self.config.protocol == "5" else "mqtt3.1.1",
                                 "max_command_bytes": self.config.max_command_bytes,
                                 "disclaimer": DISCLAIMER}
        if self.model_store is not None:
            try:
                birth["model"] = self.model_store.active_info()
            except Exception as exc:  # noqa: BLE001 - a birth without model info beats no birth
                birth["model"] = {"error": str(exc)}
        birth.update(extra)
        client.publish(self.topics.birth, _compact(birth), qos=1, retain=True)

    def publish_config_reported(self, client: mqtt.Client, reported: dict[str, Any] | None) -> None:
        """The effective configuration (`reported`, or asked from the device when None)."""
        if self.control is None:
            return
        try:
            config = reported if reported is not None else self.control.get_config()
        except Exception as exc:  # noqa: BLE001 - try again on the next connect
            log.warning("cannot read config for config/reported: %s", exc)
            return
        doc = {"schema": f"ecg.config/{SCHEMA_VERSION}", "device_id": self.device_id, "ts": iso(time.time()),
               "config_version": config.get("config_version"), "config": config}
        client.publish(self.topics.config_reported, _compact(doc), qos=1, retain=True)

    def publish_telemetry(self, client: mqtt.Client, health: dict[str, Any]) -> None:
        """health: the uplink's own figures (system health, outbox depth); then the daemon's metrics."""
        self.last_telemetry = time.time()
        with self._lock:
            extra = dict(self._telemetry_extra)
        doc = {"schema": f"ecg.telemetry/{SCHEMA_VERSION}", "device_id": self.device_id, "ts": iso(time.time()),
               **health}
        doc.update(extra)
        client.publish(self.topics.telemetry, _compact(doc), qos=0, retain=True)
