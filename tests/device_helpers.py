"""The device's real operations without its data path, for tests of the command router and its transports.

`real_device(tmp_path)` opens a real state directory (runtime config, hash-chained audit log, result store,
alarm latch, patient store) exactly as the daemon does (edge_app.device_state.open_device_state) and puts the
real DeviceOperations on top. No model is loaded and no front end is read: what is tested is validation,
persistence, audit and what is published, through the same code the daemon runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_app.config import config_from_dict
from edge_app.device_state import DeviceState, open_device_state
from edge_app.dispatcher import Dispatcher
from edge_app.messages import AlarmChanged, PatientChanged
from edge_app.operations import DeviceOperations


@dataclass
class RealDevice:
    state: DeviceState
    bus: Dispatcher
    operations: DeviceOperations
    published: list[Any] = field(default_factory=list)     # AlarmChanged / PatientChanged, in order

    def audit_kinds(self) -> list[str]:
        import json
        return [json.loads(line)["kind"] for line in self.state.audit.path.read_text().splitlines()]

    def close(self) -> None:
        self.state.close()


def real_device(tmp_path: Path, device_id: str = "test-dev", **sections: dict[str, Any]) -> RealDevice:
    cfg = config_from_dict({"device": {"id": device_id}, "storage": {"state_dir": str(tmp_path / "state")},
                            **sections})
    bus = Dispatcher()
    state = open_device_state(cfg, "test-run", bus.publish)
    device = RealDevice(state, bus, DeviceOperations(state, bus))
    bus.subscribe(AlarmChanged, device.published.append)
    bus.subscribe(PatientChanged, device.published.append)
    return device
