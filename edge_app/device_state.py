"""What the device keeps in its state directory, opened in one place: configuration overrides, audit log,
result store, alarm latch and patient context.

Why one place: the daemon opens these at start, and so can anything that needs the device's real operations
without running the data path (tests of the command router, of MQTT commands, of the bedside page's writes),
so those use the real validation, persistence and audit instead of a stand-in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edge_app.alarm_latch import AlarmLatch
from edge_app.errors import ConfigError
from edge_app.patient import PatientStore
from edge_app.results import PatientContext
from edge_app.runtime_config import RuntimeConfig
from edge_app.storage import AuditLog, ResultStore

if TYPE_CHECKING:
    from edge_app.config import Config
    from edge_app.messages import AlarmChanged


@dataclass
class DeviceState:
    runtime: RuntimeConfig
    audit: AuditLog
    store: ResultStore
    alarms: AlarmLatch
    patient: PatientStore

    def close(self) -> None:
        self.store.close()
        self.audit.close()


def check_state_dir(cfg: Config) -> None:
    """The state directory exists and is writable, or a ConfigError says how to fix it."""
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        probe = cfg.state_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError("storage.state_dir", f"{cfg.state_dir} is not a writable directory ({e.strerror})",
                          "create it and give the service user write access (systemd: StateDirectory=ecg-edge)"
                          ) from None


def open_device_state(cfg: Config, run_id: str, publish_alarm: Callable[[AlarmChanged], None]) -> DeviceState:
    """Open everything in <state_dir> (runtime overrides re-applied first: they may change storage limits)."""
    check_state_dir(cfg)
    runtime = RuntimeConfig(cfg, cfg.state_dir / "config-overrides.json")
    runtime.load_overrides()
    cfg = runtime.current
    audit = AuditLog(cfg.state_dir / "audit.jsonl", cfg.device_id)
    store = ResultStore(cfg.state_dir, max_bytes=cfg.get("storage.max_bytes"),
                        retention_days=cfg.get("storage.retention_days"),
                        keep_strips=cfg.get("storage.keep_strips"), audit=audit)
    for result_id in store.recovered:
        audit.append("result_recovered", {"id": result_id})
    alarms = AlarmLatch(cfg.state_dir / "alarms.json", cfg.device_id, run_id, audit, publish_alarm)
    patient = PatientStore(cfg.state_dir / "patient.json", PatientContext(*cfg.patient))
    return DeviceState(runtime, audit, store, alarms, patient)
