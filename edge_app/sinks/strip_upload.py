"""The strip sink: with each analysed window, queue its 12-lead strip right after its result (ecg.strip/1).

Why a sink of its own: a clinician at the receiving hospital cannot review a result without the ECG it
came from, but the strip is ~10x the result's size, so it is optional (mqtt.strips: all / flagged / off
for metered links) and must never delay the result itself. It is subscribed right after the uplink sink,
which queues the result (dispatcher order = subscription order), so the outbox holds result then strip.
Both carry the result's priority, and the outbox's order (priority, then production order) keeps a
suspected MI's strip ahead of routine traffic and right behind its own result.

A failure to queue a strip (outbox full, an unencodable window) is logged and counted, never raised: the
result has already been queued and the strip stays in the device's own store.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_app.messages import ResultReady
from edge_app.uplink.settings import STRIP_MODES
from edge_app.uplink.strip_codec import StripError, encode_strip

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher

log = logging.getLogger(__name__)
FLAGGED = ("high", "medium")


class StripSink:
    """Encodes each result's strip and queues it on the uplink (Uplink.publish_strip). mode = mqtt.strips."""

    def __init__(self, uplink: Any, mode: str = "all"):
        if mode not in STRIP_MODES:
            raise ValueError(f"strip mode {mode!r} not one of {STRIP_MODES}")
        self.uplink = uplink
        self.mode = mode
        self.counters = {"queued": 0, "skipped": 0, "failed": 0, "bytes": 0}

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(ResultReady, self.on_result)

    def wants(self, result: dict[str, Any]) -> bool:
        if self.mode == "off":
            return False
        return self.mode == "all" or result.get("alarm_priority") in FLAGGED

    def on_result(self, msg: ResultReady) -> None:
        self.publish(msg.result, msg.strip_uv, msg.strip_fs)

    def publish(self, result: dict[str, Any], strip_uv: np.ndarray | None, fs: float | None) -> str | None:
        """Queue the strip of `result`; returns its msg_id, or None when skipped or failed (logged)."""
        if not self.wants(result) or strip_uv is None or not fs:
            self.counters["skipped"] += 1
            return None
        rid = str(result["id"])
        window = result.get("window") or {}
        try:
            strip = encode_strip(strip_uv, float(fs), result_id=rid, run_id=str(result.get("run_id") or ""),
                                 start_index=int(window.get("start_index") or 0),
                                 device_time_us=window.get("device_time_us"),
                                 t0=first_sample_time(result, len(strip_uv), float(fs)))
            msg_id = self.uplink.publish_strip(strip, result.get("alarm_priority") or "none")
        except (StripError, ValueError, TypeError) as exc:
            self.counters["failed"] += 1
            log.error("strip of result %s not sent: %s", rid[:8], exc)
            return None
        except Exception:  # noqa: BLE001 - OutboxFull etc.: the uplink already raised its technical alarm
            self.counters["failed"] += 1
            log.exception("could not queue the strip of result %s; it stays in the store", rid[:8])
            return None
        self.counters["queued"] += 1
        self.counters["bytes"] += len(strip["data"])
        return msg_id


def first_sample_time(result: dict[str, Any], n: int, fs: float) -> str:
    """UTC time of the strip's first sample from the device's wall clock: the result's time, minus how long
    after the last sample it was produced, minus the strip's duration."""
    try:
        t = datetime.fromisoformat(str(result["time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        t = datetime.now(timezone.utc)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    lag_ms = float((result.get("timings_ms") or {}).get("since_last_sample_ms") or 0.0)
    t0 = t - timedelta(seconds=n / fs + lag_ms / 1000.0)
    return t0.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
