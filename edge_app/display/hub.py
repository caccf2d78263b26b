"""LiveHub: the in-memory state the daemon pushes into and the bedside display reads from.

Why a hub and not direct calls into the daemon: the display must never slow the signal path or see
half-updated state. Every push is O(block) under one short lock; readers copy what they need and
wait on a condition variable (for Server-Sent Events) instead of polling the daemon.

The live trace (decimation, monitor-mode high-pass, lead-off blanking, gaps) is live_strip.py. The page's
writes (patient context, alarm acknowledgement) go through the device's command router
(edge_app/command_router.py, transport "http"): the same names, checks and refusals as the control socket
and MQTT; a refusal becomes the HTTP status (400 / 404 / 409 / 503) with {"error": message}.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_app.command_router import CommandError
from edge_app.jsonsafe import json_safe

from .live_strip import LiveStrip
from .views import patient_view, result_summary

if TYPE_CHECKING:
    from edge_app.command_router import CommandRouter
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Plain JSON types for the page: the one converter (edge_app.jsonsafe), NaN/inf -> null."""
    return json_safe(value, unknown=str)


class DisplayInputError(ValueError):
    """Bad input from the page/API. `status` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class _Entry:
    result: dict[str, Any]
    strip_fs: float | None = None
    strip_uv: np.ndarray | None = None   # (n, 12) float32 microvolts


class LiveHub:
    """Thread-safe live state for the bedside display (see module docstring)."""

    def __init__(self, commands: CommandRouter | None = None, *, display_fs: float = 125.0,
                 ring_seconds: float = 12.0, history: int = 50, strips_kept: int = 20):
        #: The device's command router (transport "http"): the page's writes go through it. None: a page with no
        #: device behind it (a display test, a benchmark) refuses writes with 503.
        self.commands = commands
        self.history = int(history)
        self.strips_kept = int(strips_kept)
        #: Optional: result id -> (fs, (n, 12) uV array) for results whose strip was not pushed.
        self.strip_lookup: Callable[[str], tuple[float, np.ndarray] | None] | None = None
        #: Optional: result id -> result dict for results older than the in-memory history.
        self.result_lookup: Callable[[str], dict[str, Any] | None] | None = None
        #: Optional: n -> the n newest stored results, newest first (e.g. ResultStore.latest), so the
        #: page still shows the last findings after a daemon restart.
        self.history_lookup: Callable[[int], list[dict[str, Any]]] | None = None
        #: Optional: result id -> word back from the receiving station (delivery state, reviews), e.g.
        #: edge_app.sinks.station_feedback.StationFeedbackSink.feedback. Added to results as "feedback".
        self.feedback_lookup: Callable[[str], dict[str, Any] | None] | None = None

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._version = 0
        self._events: collections.deque[tuple[int, str, Any]] = collections.deque(maxlen=256)  # (eseq, kind, payload)
        self._eseq = 0                     # non-sample events so far (readers detect lost ones)
        self._strip = LiveStrip(display_fs, ring_seconds)
        self._quality: dict[str, Any] | None = None
        self._results: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._latest_id: str | None = None
        self._alarms: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._status: dict[str, Any] = {}
        self._patient: dict[str, Any] = {"age": None, "sex": None}
        self._heart_rate: float | None = None
        self._last_review: dict[str, Any] | None = None   # the hospital's newest review, whichever result
        self._started = time.time()

    # ------------------------------------------------------------------ pushes (daemon side)
    def _bump(self, kind: str, payload: Any) -> None:
        """Record an event and wake waiting readers. Caller holds the lock."""
        self._version += 1
        if kind != "samples":
            self._eseq += 1
            self._events.append((self._eseq, kind, payload))
        self._cond.notify_all()

    def push_samples(self, first_index: int, fs: float, leads_uv: np.ndarray,
                     lead_off: np.ndarray | None = None) -> None:
        """A block of consecutive samples: (n, 12) microvolts in LEADS order at `fs` Hz.

        `lead_off` ((n, 9) bool, ELECTRODES order) updates the live electrode status immediately,
        before any quality window completes.
        """
        x = np.asarray(leads_uv, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 12:
            raise ValueError(f"leads_uv must be (n, 12) in LEADS order, got {x.shape}")
        if not fs or fs <= 0:
            raise ValueError(f"fs must be > 0, got {fs}")
        with self._cond:
            if self._strip.push(first_index, fs, x, lead_off):
                self._bump("electrodes", {"electrodes": self._strip.electrodes(self._quality),
                                          "leads": self._strip.leads(self._quality)})
            self._bump("samples", None)

    def push_block(self, block: SampleBlock) -> None:
        """Convenience for a firmware_bridge.samples.SampleBlock."""
        self.push_samples(block.first_index, block.fs, block.leads_uv, getattr(block, "lead_off", None))

    def push_quality(self, quality: dict[str, Any]) -> None:
        """Latest signal-quality verdict: {verdict, reasons, electrodes_off, noisy_leads, leads, heart_rate?}."""
        q = _plain(dict(quality))
        with self._cond:
            self._quality = q
            hr = q.get("heart_rate")
            if isinstance(hr, (int, float)) and math.isfinite(hr):
                self._heart_rate = float(hr)
            self._bump("quality", {"quality": q, "electrodes": self._strip.electrodes(self._quality),
                                   "leads": self._strip.leads(self._quality), "heart_rate": self._heart_rate})

    def push_heart_rate(self, bpm: float | None) -> None:
        with self._cond:
            self._heart_rate = None if bpm is None or not math.isfinite(bpm) else float(bpm)
            self._bump("heart_rate", self._heart_rate)

    def push_result(self, result: dict[str, Any], strip_uv: np.ndarray | None = None,
                    strip_fs: float | None = None) -> None:
        """A triage result (TriageResult.to_dict()), optionally with its raw strip ((n, 12) uV)."""
        shown = _plain(dict(result))
        rid = str(shown.get("id") or f"r{int(time.time() * 1000)}")
        shown["id"] = rid
        strip = None
        if strip_uv is not None:
            strip = np.asarray(strip_uv, dtype=np.float32)
            if strip.ndim != 2 or strip.shape[1] != 12 or not strip_fs:
                raise ValueError(f"strip_uv must be (n, 12) with strip_fs, got {strip.shape}, fs={strip_fs}")
        with self._cond:
            self._results[rid] = _Entry(shown, float(strip_fs) if strip is not None else None, strip)
            self._results.move_to_end(rid)
            while len(self._results) > self.history:
                self._results.popitem(last=False)
            with_strip = [entry for entry in self._results.values() if entry.strip_uv is not None]
            for entry in with_strip[:-self.strips_kept] if len(with_strip) > self.strips_kept else []:
                entry.strip_uv, entry.strip_fs = None, None
            self._latest_id = rid
            hr = shown.get("heart_rate_bpm", shown.get("heart_rate"))
            if isinstance(hr, (int, float)) and math.isfinite(hr):
                self._heart_rate = float(hr)
            alarms = list(shown.get("alarms") or [])
            if isinstance(shown.get("alarm"), dict):
                alarms.append(shown["alarm"])
            for alarm in alarms:
                if isinstance(alarm, dict) and alarm.get("id"):
                    self._add_alarm_locked(alarm, rid)
            self._bump("result", result_summary(shown))

    def _add_alarm_locked(self, alarm: dict[str, Any], result_id: str | None = None) -> dict[str, Any]:
        a = _plain(dict(alarm))
        aid = str(a["id"])
        prev = self._alarms.get(aid, {})
        merged = {**prev, **a}
        if "acknowledged" not in a:
            merged["acknowledged"] = bool(prev.get("acknowledged") or merged.get("acknowledged_by")
                                          or merged.get("acknowledged_at"))
        merged.setdefault("time", time.time())
        if result_id and not merged.get("result_id"):
            merged["result_id"] = result_id
        self._alarms[aid] = merged
        self._alarms.move_to_end(aid)
        while len(self._alarms) > self.history:
            self._alarms.popitem(last=False)
        self._bump("alarm", merged)
        return merged

    def push_feedback(self, result_id: str, feedback: dict[str, Any]) -> None:
        """The receiving station's word on a result changed (receipt, review, queued count): SSE 'feedback'."""
        with self._cond:
            fb = _plain(dict(feedback))
            review = fb.get("review")
            if isinstance(review, dict) and (self._last_review is None or review.get("received_at", "") >=
                                             self._last_review["review"].get("received_at", "")):
                # new results arrive every stride: the newest review must stay visible whatever is on screen
                self._last_review = {"result_id": str(result_id), "result_time": fb.get("result_time"),
                                     "review": review}
            self._bump("feedback", {"result_id": str(result_id), "feedback": fb})

    def _feedback(self, result_id: Any) -> dict[str, Any] | None:
        if self.feedback_lookup is None or not result_id:
            return None
        try:
            fb = self.feedback_lookup(str(result_id))
        except Exception:  # a broken store must not take the page down
            log.exception("feedback_lookup(%r) failed", result_id)
            return None
        return _plain(dict(fb)) if fb else None

    def push_alarm(self, alarm: dict[str, Any]) -> None:
        """A new alarm or an update to one (same `id`), e.g. {"acknowledged": True, "by": ...}."""
        if not isinstance(alarm, dict) or not alarm.get("id"):
            raise ValueError("alarm must be a dict with an 'id'")
        with self._cond:
            self._add_alarm_locked(alarm)

    def set_status(self, status: dict[str, Any]) -> None:
        with self._cond:
            self._status = _plain(dict(status))
            self._bump("status", self._status)

    def set_patient_view(self, patient: dict[str, Any]) -> None:
        """The current patient context when it changed elsewhere (fleet over MQTT, CLI)."""
        with self._cond:
            self._patient = patient_view(patient)
            self._bump("patient", dict(self._patient))

    # ------------------------------------------------------------------ writes from the page
    def _command(self, name: str, args: Any, by: str = "bedside") -> Any:
        """Route a write through the device's command router; its refusal becomes the HTTP error."""
        if self.commands is None:
            raise DisplayInputError("this page has no device behind it; nothing was changed", 503)
        try:
            return self.commands.execute(name, args, by)
        except CommandError as exc:
            raise DisplayInputError(exc.message, exc.http_status) from exc

    def set_patient(self, body: Any) -> dict[str, Any]:
        """patient/set with the page's body {"age", "sex"}; a field left out keeps its value. Raises
        DisplayInputError (nothing changed) when the router refuses it."""
        patient = patient_view(self._command("patient/set", body))
        with self._cond:
            self._patient = patient
            self._bump("patient", dict(self._patient))
            return dict(self._patient)

    def clear_patient(self) -> dict[str, Any]:
        """'New patient': forget age and sex."""
        patient = patient_view(self._command("patient/clear", {}))
        with self._cond:
            self._patient = patient
            self._bump("patient", dict(self._patient))
            return dict(self._patient)

    def acknowledge_alarm(self, alarm_id: str, by: str = "bedside") -> dict[str, Any]:
        """alarm/ack: 404 for an unknown alarm, 409 when it is already acknowledged."""
        alarm = self._command("alarm/ack", {"alarm_id": alarm_id}, by)
        with self._cond:
            return dict(self._add_alarm_locked({"id": alarm_id, "acknowledged": True,
                                                "acknowledged_by": alarm.get("acknowledged_by", by),
                                                "acknowledged_at": alarm.get("acknowledged_at")}))

    # ------------------------------------------------------------------ reads (server side)
    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    @property
    def seq(self) -> int:
        with self._lock:
            return self._strip.seq

    @property
    def patient(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._patient)

    def status(self) -> dict[str, Any]:
        with self._lock:
            latest = self._results[self._latest_id].result if self._latest_id in self._results else None
            return {
                "notice": "Triage aid, not a diagnosis",
                "server_time": time.time(),
                "uptime_s": round(time.time() - self._started, 1),
                "daemon": self._status,
                "signal": self._strip.signal(),
                "heart_rate": self._heart_rate,
                "quality": self._quality,
                "electrodes": self._strip.electrodes(self._quality),
                "leads": self._strip.leads(self._quality),
                "patient": dict(self._patient),
                "alarms": [dict(a) for a in self._alarms.values() if not a.get("acknowledged")],
                "latest_id": self._latest_id,
                "latest": result_summary(latest) if latest else None,
                "last_review": dict(self._last_review) if self._last_review else None,
                "version": self._version,
            }

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            e = self._results.get(self._latest_id) if self._latest_id else None
            if e:
                return dict(e.result)
        stored = self._stored(1)
        return stored[0] if stored else None

    def _stored(self, n: int) -> list[dict[str, Any]]:
        if self.history_lookup is None or n <= 0:
            return []
        try:
            return [_plain(dict(r)) for r in self.history_lookup(n) or []]
        except Exception:  # a broken store must not take the page down
            log.exception("history_lookup(%d) failed", n)
            return []

    def results(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first: in-memory results, topped up from the store (after a restart) when short."""
        with self._lock:
            items = list(self._results.values())[-limit:] if limit > 0 else []
            out = [result_summary(e.result) for e in reversed(items)]
        if len(out) < limit:
            seen = {r["id"] for r in out}
            out += [result_summary(r) for r in self._stored(limit) if r.get("id") not in seen][:limit - len(out)]
        if self.feedback_lookup is not None:
            for r in out:
                r["feedback"] = self._feedback(r.get("id"))
        return out

    def alarms(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in reversed(self._alarms.values())]

    def result(self, result_id: str) -> dict[str, Any] | None:
        with self._lock:
            e = self._results.get(result_id)
            r = dict(e.result) if e is not None else None
        if r is None and self.result_lookup is not None:
            try:
                got = self.result_lookup(result_id)
            except Exception:  # a broken store must not take the page down
                log.exception("result_lookup(%r) failed", result_id)
                return None
            r = _plain(dict(got)) if got else None
        if r is not None and self.feedback_lookup is not None:
            r["feedback"] = self._feedback(result_id)
        return r

    def feedback(self, result_id: str) -> dict[str, Any] | None:
        """The station's word on one result (None: no feedback source, e.g. a page without a daemon)."""
        return self._feedback(result_id)

    def strip(self, result_id: str) -> tuple[float, np.ndarray] | None:
        """(fs, (n, 12) uV) raw strip of a result, from memory or the strip_lookup."""
        with self._lock:
            e = self._results.get(result_id)
            if e is not None and e.strip_uv is not None:
                return e.strip_fs, e.strip_uv
        if self.strip_lookup is not None:
            try:
                got = self.strip_lookup(result_id)
            except Exception:
                log.exception("strip_lookup(%r) failed", result_id)
                return None
            if got is not None:
                fs, arr = got
                return float(fs), np.asarray(arr, dtype=np.float32)
        return None

    def live_strip(self, since: int | None = None, max_seconds: float | None = None) -> dict[str, Any]:
        """Display samples after sequence number `since` (all buffered when None or out of range).

        Returns {"fs", "start", "end", "leads": LEADS, "data": [[µV int or None] * 12, ...], "reset"}.
        """
        with self._lock:
            return self._strip.since(since, max_seconds)

    @property
    def event_seq(self) -> int:
        with self._lock:
            return self._eseq

    def events_since(self, eseq: int) -> tuple[int, list[tuple[int, str, Any]], bool]:
        """Non-sample events after event number `eseq` -> (latest eseq, events, lost).

        `lost` is True when the bounded log no longer holds all of them (a very slow reader); the
        reader should then resynchronise from status().
        """
        with self._lock:
            evs = [e for e in self._events if e[0] > eseq]
            lost = self._eseq > eseq and (not evs or evs[0][0] > eseq + 1)
            return self._eseq, evs, lost

    def wait(self, version: int, timeout: float) -> int:
        """Block until the hub's version exceeds `version` or `timeout` s pass; returns the version."""
        with self._cond:
            if self._version <= version:
                self._cond.wait(timeout)
            return self._version
