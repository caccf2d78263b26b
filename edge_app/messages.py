"""The messages the daemon publishes on its dispatcher (edge_app.dispatcher), one dataclass each.

Why dataclasses: a sink reads named fields, and a newcomer sees here, in one screen, everything that
leaves the data path. The payloads that leave the device (result dicts, alarm dicts, event dicts) keep
their existing wire shape (results.py, docs/mqtt.md); these classes only carry them in-process.

| message           | published by                 | when                                        |
|-------------------|------------------------------|---------------------------------------------|
| BlockReceived     | daemon data path             | every SampleBlock from the front end (20 ms)|
| ResultReady       | daemon data path             | every analysed 10 s window                  |
| AlarmChanged      | AlarmLatch                   | an alarm is raised, acknowledged, cleared,  |
|                   |                              | or continued from the previous run          |
| DeviceEvent       | daemon / RunLedger           | started, stopped, stream_gap                |
| StatusTick        | daemon                       | every 5 s (only built when someone listens) |
| TelemetryUpdate   | Telemetry                    | every 5 s (send now or not) and per result  |
| PatientChanged    | DeviceOperations             | patient context set or cleared              |
| ConfigChanged     | DeviceOperations             | a runtime configuration change was applied  |
| DeviceInfoChanged | daemon                       | model swapped, front end (re)introduced     |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from edge_app.results import Alarm, TriageResult
    from firmware_bridge.samples import SampleBlock


@dataclass(frozen=True)
class BlockReceived:
    """One block of samples as the driver delivered it, before any analysis. Stream-level analysers
    (a live rhythm monitor) and the live strip on the page subscribe to this."""
    block: SampleBlock
    t_recv: float                 # monotonic time the reader thread took it off the serial port


@dataclass(frozen=True)
class ResultReady:
    """One analysed window: the result (already latched: its alarms carry their latched ids) and its strip."""
    triage: TriageResult
    result: dict[str, Any]        # triage.to_dict(): what is stored, published and shown
    strip_uv: np.ndarray          # (n, 12) microvolts at strip_fs, the raw 10 s strip
    strip_fs: float
    t_handled: float              # monotonic time the daemon started handling it (latency accounting)


@dataclass(frozen=True)
class AlarmChanged:
    """An alarm's state changed. `restored` marks an alarm continued from the previous run (already
    published then: the page shows it again, the uplink does not send it twice)."""
    alarm: Alarm
    state: str                    # "raised" | "acknowledged" | "cleared"
    restored: bool = False

    @property
    def active(self) -> bool:
        return self.state != "cleared"

    def to_dict(self) -> dict[str, Any]:
        """The alarm as published on MQTT (docs/mqtt.md): Alarm fields + state + active."""
        return self.alarm.to_dict() | {"state": self.state, "active": self.active}


@dataclass(frozen=True)
class DeviceEvent:
    """A device event (schema ecg-edge.event/1): started, stopped, stream_gap."""
    event: dict[str, Any]
    priority: str = "low"


@dataclass(frozen=True)
class StatusTick:
    """The daemon's full status (DeviceOperations.status()), every 5 s."""
    status: dict[str, Any]


@dataclass(frozen=True)
class TelemetryUpdate:
    """What only the daemon knows for the uplink's health telemetry. now=False: refresh what the next
    periodic telemetry carries; now=True: publish it on the uplink's next turn."""
    metrics: dict[str, Any]
    now: bool = False


@dataclass(frozen=True)
class PatientChanged:
    """The patient context changed (any source: socket, MQTT, page, config)."""
    patient: dict[str, Any]       # PatientContext.to_dict()


@dataclass(frozen=True)
class ConfigChanged:
    """A runtime configuration change was applied (any source: MQTT, control socket). `config` is the new
    effective configuration, secrets masked, with its config_version: what config/reported retains."""
    config: dict[str, Any]


@dataclass(frozen=True)
class DeviceInfoChanged:
    """Identity facts for the uplink's retained birth message (model, front end)."""
    info: dict[str, Any]
