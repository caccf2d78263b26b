"""The strip sink: with each analysed window, queue its 12-lead strip right after its result (ecg.strip/1).

Why a sink of its own: a clinician at the receiving hospital cannot review a result without the ECG it
came from, but the strip is ~10x the result's size, so it is optional (mqtt.strips: all / flagged / off
for metered links) and must never delay the result itself. It is subscribed right after the uplink sink,
which queues the result (dispatcher order = subscription order), so the outbox holds result then strip.
Both carry the result's priority, and the outbox's order (priority, then production order) keeps a
suspected MI's strip ahead of routine traffic and right behind its own result.

A failure to queue a strip (outbox full, an unencodable window) is logged and counted, never raised: the
result has already been queued and the strip stays in the device's own store. A strip the outbox refused
(full, disk error) is offered again from the store on a later status tick, once its result is queued (the
uplink sink re-queues refused results the same way), so an outage of the outbox does not cost strips.

Why a strip budget: a strip is 5-7x its result, so during a long outage strips alone would fill the outbox
(512 MiB: ~20 h of strips at a 5 s stride, against ~6 days of results alone) and then the outbox would refuse
the results themselves. Routine strips therefore stop being queued once the outbox holds STRIP_BUDGET_FRACTION
of its byte budget (they stay in the store); a high-priority (suspected MI) strip is always offered.
"""
from __future__ import annotations

import collections
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_app.messages import ResultReady, StatusTick, TelemetryUpdate
from edge_app.uplink.outbox import OutboxRefused
from edge_app.uplink.settings import STRIP_MODES
from edge_app.uplink.strip_codec import StripError, encode_strip

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher

log = logging.getLogger(__name__)
FLAGGED = ("high", "medium")
#: Non-high strips are not queued while the outbox holds more than this fraction of its byte budget.
STRIP_BUDGET_FRACTION = 0.5
#: Refused strips remembered for a retry (the oldest are forgotten beyond this; they stay in the store).
PENDING_MAX = 1000


class StripSink:
    """Encodes each result's strip and queues it on the uplink (Uplink.publish_strip). mode = mqtt.strips."""

    def __init__(self, uplink: Any, mode: str = "all", store: Any | None = None):
        """store: the ResultStore (get, strip, unqueued) to offer refused strips again; None: no retry."""
        if mode not in STRIP_MODES:
            raise ValueError(f"strip mode {mode!r} not one of {STRIP_MODES}")
        self.uplink = uplink
        self.mode = mode
        self.store = store
        self.counters = {"queued": 0, "skipped": 0, "failed": 0, "bytes": 0, "over_budget": 0, "retried": 0}
        self.bus: Dispatcher | None = None
        self.pending: collections.OrderedDict[str, None] = collections.OrderedDict()   # refused, oldest first
        if store is not None and mode != "off":
            # results stored but never queued (a crash between store and outbox, or refused before a restart):
            # the uplink sink queues them at start; their strips follow on the first status tick
            for result in store.unqueued()[-PENDING_MAX:]:
                self.pending[str(result["id"])] = None

    def subscribe(self, bus: Dispatcher) -> None:
        self.bus = bus
        bus.subscribe(ResultReady, self.on_result)
        bus.subscribe(StatusTick, self.on_status)

    def wants(self, result: dict[str, Any]) -> bool:
        if self.mode == "off":
            return False
        return self.mode == "all" or result.get("alarm_priority") in FLAGGED

    def on_result(self, msg: ResultReady) -> None:
        self.publish(msg.result, msg.strip_uv, msg.strip_fs)
        if self.bus is not None:          # fleet admins see strips sent / held back in the device's telemetry
            self.bus.publish(TelemetryUpdate({"strips": dict(self.counters, mode=self.mode)}, now=False))

    def publish(self, result: dict[str, Any], strip_uv: np.ndarray | None, fs: float | None) -> str | None:
        """Queue the strip of `result`; returns its msg_id, or None when skipped or failed (logged)."""
        if not self.wants(result) or strip_uv is None or not fs:
            self.counters["skipped"] += 1
            return None
        rid = str(result["id"])
        priority = result.get("alarm_priority") or "none"
        if priority != "high" and self._over_budget():
            self.counters["over_budget"] += 1
            if self.counters["over_budget"] in (1, 10, 100) or self.counters["over_budget"] % 1000 == 0:
                log.warning("outbox over %.0f%% of its budget: routine strips are kept in the store only "
                            "(%d so far); results, alarms and suspected-MI strips are still queued",
                            100 * STRIP_BUDGET_FRACTION, self.counters["over_budget"])
            return None
        window = result.get("window") or {}
        try:
            strip = encode_strip(strip_uv, float(fs), result_id=rid, run_id=str(result.get("run_id") or ""),
                                 start_index=int(window.get("start_index") or 0),
                                 device_time_us=window.get("device_time_us"),
                                 t0=first_sample_time(result, len(strip_uv), float(fs)))
            msg_id = self.uplink.publish_strip(strip, priority)
        except (StripError, ValueError, TypeError) as exc:
            self.counters["failed"] += 1
            log.error("strip of result %s not sent: %s", rid[:8], exc)
            return None
        except OutboxRefused as exc:      # full or a disk error: offered again once the outbox works
            self.counters["failed"] += 1
            if self.store is not None:
                self.pending[rid] = None
                while len(self.pending) > PENDING_MAX:
                    self.pending.popitem(last=False)
            log.warning("outbox refused the strip of result %s (%s); %s", rid[:8], exc,
                        "offered again later" if self.store is not None else "it stays in the store")
            return None
        except Exception:  # noqa: BLE001 - anything unforeseen: the result is queued, the strip stays stored
            self.counters["failed"] += 1
            log.exception("could not queue the strip of result %s; it stays in the store", rid[:8])
            return None
        self.counters["queued"] += 1
        self.counters["bytes"] += len(strip["data"])
        return msg_id

    def on_status(self, msg: StatusTick) -> None:
        if self.pending:
            self.retry()

    def retry(self) -> int:
        """Offer refused strips again, oldest first, each only once its result is queued; stops at the first
        refusal. Returns how many were queued."""
        waiting = {r["id"] for r in self.store.unqueued()}
        done = 0
        for rid in list(self.pending):
            if rid in waiting:                # its result is not in the outbox yet: keep the order, wait
                break
            result = self.store.get(rid)
            try:
                strip_uv, fs = self.store.strip(rid) if result is not None else (None, None)
            except (KeyError, FileNotFoundError, OSError, ValueError):
                strip_uv, fs = None, None
            if strip_uv is None:              # deleted by retention or stored without its strip
                self.pending.pop(rid, None)
                continue
            self.pending.pop(rid, None)
            msg_id = self.publish(result, strip_uv, fs)
            if rid in self.pending:           # refused again (publish re-added it at the end): keep its place
                self.pending.move_to_end(rid, last=False)
                break
            if msg_id is not None:            # else: now over the strip budget, or unencodable (logged): done
                self.counters["retried"] += 1
                done += 1
        return done

    def _over_budget(self) -> bool:
        outbox = getattr(self.uplink, "outbox", None)
        try:
            return outbox.used_bytes() > STRIP_BUDGET_FRACTION * outbox.max_bytes
        except AttributeError:          # an uplink without a byte-counted outbox: no budget to keep
            return False


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
