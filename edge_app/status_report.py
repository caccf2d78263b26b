"""The device's status: one dict for the `status` command (socket, MQTT) and the bedside page's /api/status.

Why a function of the services (not of the daemon): it only reads snapshots each service already keeps
(driver status and statistics, counters and latencies, active alarms, store and uplink statistics), so it is
cheap, never blocks the data path, and says in one place what "status" contains.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from edge_app import __version__
from edge_app.jsonsafe import json_safe

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from edge_app.config import Config
    from edge_app.inference import LoadedModel
    from edge_app.patient import PatientStore
    from edge_app.storage import ResultStore
    from edge_app.supervision import Watchdog
    from edge_app.telemetry import Telemetry
    from edge_app.uplink.service import Uplink
    from firmware_bridge.driver import FrontEndDriver

LAST_RESULT_KEYS = ("id", "time", "triage_level", "alarm_priority", "probabilities", "heart_rate_bpm")


def device_status(*, state: str, ready_s: float | None, cfg: Config, config_version: str,
                  driver: FrontEndDriver | None, model: LoadedModel, patient: PatientStore, telemetry: Telemetry,
                  alarms: AlarmLatch, store: ResultStore, watchdog: Watchdog, uplink: Uplink | None) -> dict[str, Any]:
    healthy, why = watchdog.healthy()
    last = telemetry.last_result
    return {
        "state": state, "device_id": cfg.device_id, "software_version": __version__, "pid": os.getpid(),
        "ready_s": ready_s,
        "frontend": {"status": str(getattr(driver, "status", "none")), "port": cfg.get("frontend.port"),
                     "info": json_safe(getattr(driver, "info", None), unknown=str),
                     "stats": json_safe(getattr(driver, "stats", None), unknown=str)},
        "model": {"version": model.model_version, "sha256": model.model_sha256},
        "patient": patient.get().to_dict(),
        "counters": dict(telemetry.counters),
        "latency_ms": telemetry.latency_summary(),
        "latency_all_ms": [round(v, 1) for v in telemetry.latencies_ms],
        "alarms_active": alarms.active_alarms(),
        "last_result": None if last is None else (
            {k: last.get(k) for k in LAST_RESULT_KEYS} | {"quality": (last.get("quality") or {}).get("verdict")}),
        "quality": None if last is None else last.get("quality"),
        "store": store.stats(), "watchdog": {"healthy": healthy, "detail": why, "pings": watchdog.pings},
        "uplink": uplink.stats() if uplink is not None else {"enabled": False},
        "config_version": config_version,
        "notice": "Triage aid, not a diagnosis",
    }
