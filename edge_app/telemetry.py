"""Telemetry: the daemon's counters and latencies, for its status, the health telemetry and the watchdog.

Why a subscriber: it counts what passes on the dispatcher (blocks, results, gaps) instead of the data
path incrementing counters by hand. Subscribed last, so a result's latency includes every sink
(store + audit fsync, uplink queue, display), exactly what "last sample -> result stored and sent" means.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from edge_app.jsonsafe import json_safe
from edge_app.messages import BlockReceived, DeviceEvent, ResultReady

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher
    from firmware_bridge.driver import FrontEndDriver

COUNTERS = ("blocks", "samples", "windows", "cannot_interpret", "gaps", "errors", "overruns")


class Telemetry:
    def __init__(self) -> None:
        self.counters = {name: 0 for name in COUNTERS}
        self.latencies_ms: deque[float] = deque(maxlen=1000)   # last sample of a window -> every sink done
        self.inference_ms: deque[float] = deque(maxlen=100)    # model run alone
        self.last_result: dict[str, Any] | None = None
        self.last_latency_ms = 0.0

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(BlockReceived, self.on_block)
        bus.subscribe(DeviceEvent, self.on_event)
        bus.subscribe(ResultReady, self.on_result)

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def on_block(self, msg: BlockReceived) -> None:
        self.counters["blocks"] += 1
        self.counters["samples"] += msg.block.n

    def on_event(self, msg: DeviceEvent) -> None:
        if msg.event.get("code") == "stream_gap":
            self.counters["gaps"] += 1

    def on_result(self, msg: ResultReady) -> None:
        triage = msg.triage
        self.counters["windows"] += 1
        if triage.triage_level == "cannot_interpret":
            self.counters["cannot_interpret"] += 1
        self.last_result = msg.result
        self.last_latency_ms = (triage.timings_ms.get("since_last_sample_ms", 0.0)
                                + (time.monotonic() - msg.t_handled) * 1000)
        self.latencies_ms.append(self.last_latency_ms)
        if "model_ms" in triage.timings_ms:
            self.inference_ms.append(triage.timings_ms["model_ms"])

    def latency_summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {"n": len(lat), "median": lat[len(lat) // 2] if lat else None,
                "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None}

    def metrics(self, state: str, driver: FrontEndDriver | None, alarm_codes: list[str]) -> dict[str, Any]:
        """What only the daemon knows, merged by the uplink into its system-health telemetry."""
        inf = sorted(self.inference_ms)
        lat = sorted(self.latencies_ms)
        last = self.last_result or {}
        found = {"state": state, "counters": dict(self.counters), "alarms_active": alarm_codes,
                 "frontend_status": str(getattr(driver, "status", "none")),
                 "frontend_stats": json_safe(getattr(driver, "stats", None), unknown=str),
                 "signal_quality": (last.get("quality") or {}).get("verdict"),
                 "inference_ms": None if not inf else round(inf[len(inf) // 2], 2),
                 "result_latency_ms": None if not lat else round(lat[len(lat) // 2], 1)}
        return {k: v for k, v in found.items() if v is not None}     # unknown yet: absent, never null
