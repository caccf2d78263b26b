"""LiveHub: the in-memory state the daemon pushes into and the bedside display reads from.

Why a hub and not direct calls into the daemon: the display must never slow the signal path or see
half-updated state. Every push is O(block) under one short lock; readers copy what they need and
wait on a condition variable (for Server-Sent Events) instead of polling the daemon.

Samples are decimated for display (a boxcar over `fs / display_fs` samples: 500 Hz -> 125 Hz by
default) into a ring of the last `ring_seconds`. Each display sample has a sequence number `seq`;
clients ask for "everything since seq N" and a gap (dropped samples, reconnect) is marked by a
NaN row so the page breaks the trace instead of drawing a false line across it.

Like a bedside monitor's "monitor mode", the live trace is high-passed (first-order, 0.5 Hz) so
electrode DC offsets and wander do not push it off the screen, and samples of a lead whose electrode
reports lead-off are blanked (NaN) rather than drawn as a rail-to-rail line. Result strips are shown
as the model sees them (the contract's zero-phase 0.5 Hz baseline removal), not through this filter.
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
from edge_app.patient import SEXES
from firmware_bridge.leads import ELECTRODES, LEAD_ELECTRODES, LEADS

if TYPE_CHECKING:
    from edge_app.command_router import CommandRouter

log = logging.getLogger(__name__)

DISPLAY_HIGHPASS_HZ = 0.5
_DEP = np.array([[e in LEAD_ELECTRODES[lead] for e in ELECTRODES] for lead in LEADS], dtype=bool)  # (12, 9)


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
        self.display_fs_target = float(display_fs)
        self.ring_seconds = float(ring_seconds)
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
        # samples
        self._in_fs: float | None = None
        self._factor = 1
        self._out_fs = self.display_fs_target
        self._cap = 1
        self._ring = np.zeros((1, 12), np.float32)
        self._seq = 0                      # display samples written so far
        self._next_index: int | None = None
        self._carry = np.zeros((0, 12), np.float64)
        self._carry_off = np.zeros((0, 12), bool)
        self._hp_x = np.full(12, np.nan)        # display high-pass state per lead (NaN = restart)
        self._hp_y = np.zeros(12)
        self._hp_r = 0.0
        self._samples_in = 0
        self._last_sample_time: float | None = None
        # state
        self._lead_off_live: list[str] = []
        self._have_live_lead_off = False   # the front end reports lead-off bits (fresher than the last window)
        self._quality: dict[str, Any] | None = None
        self._results: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._latest_id: str | None = None
        self._alarms: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._status: dict[str, Any] = {}
        self._patient: dict[str, Any] = {"age": None, "sex": None}
        self._heart_rate: float | None = None
        self._started = time.time()

    # ------------------------------------------------------------------ pushes (daemon side)
    def _bump(self, kind: str, payload: Any) -> None:
        """Record an event and wake waiting readers. Caller holds the lock."""
        self._version += 1
        if kind != "samples":
            self._eseq += 1
            self._events.append((self._eseq, kind, payload))
        self._cond.notify_all()

    def _reset_ring(self, fs: float) -> None:
        self._in_fs = float(fs)
        self._factor = max(1, int(round(fs / self.display_fs_target)))
        self._out_fs = fs / self._factor
        self._cap = max(1, int(math.ceil(self.ring_seconds * self._out_fs)))
        self._ring = np.full((self._cap, 12), np.nan, np.float32)
        self._carry = np.zeros((0, 12), np.float64)
        self._carry_off = np.zeros((0, 12), bool)
        self._hp_x = np.full(12, np.nan)
        self._hp_y = np.zeros(12)
        self._hp_r = math.exp(-2 * math.pi * DISPLAY_HIGHPASS_HZ / self._out_fs)

    def _highpass(self, dec: np.ndarray, off: np.ndarray) -> np.ndarray:
        """First-order DC blocker per lead, restarted (at 0) after a lead-off or gap."""
        out = np.empty_like(dec)
        r = self._hp_r
        px, py = self._hp_x, self._hp_y
        for i in range(dec.shape[0]):
            x = dec[i]
            bad = off[i] | ~np.isfinite(x)
            fresh = np.isnan(px)
            y = np.where(fresh, 0.0, x - px + r * py)
            y = np.where(bad, np.nan, y)
            px = np.where(bad, np.nan, x)
            py = np.where(bad, 0.0, y)
            out[i] = y
        self._hp_x, self._hp_y = px, py
        return out

    def _write(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if n == 0:
            return
        if n > self._cap:
            rows = rows[-self._cap:]
            self._seq += n - self._cap
            n = self._cap
        pos = self._seq % self._cap
        first = min(n, self._cap - pos)
        self._ring[pos:pos + first] = rows[:first]
        if first < n:
            self._ring[:n - first] = rows[first:]
        self._seq += n

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
            if self._in_fs != float(fs):
                self._reset_ring(fs)
                self._next_index = None
            if self._next_index is not None and first_index != self._next_index:
                # A gap (or restart): drop the partial group, break the trace, restart the filter.
                self._carry = np.zeros((0, 12), np.float64)
                self._carry_off = np.zeros((0, 12), bool)
                self._hp_x = np.full(12, np.nan)
                self._write(np.full((1, 12), np.nan, np.float32))
            self._next_index = int(first_index) + x.shape[0]
            lo = None if lead_off is None else np.asarray(lead_off, dtype=bool)
            if lo is not None and lo.shape == (x.shape[0], len(ELECTRODES)):
                lead_is_off = (lo.astype(np.uint8) @ _DEP.T.astype(np.uint8)) > 0     # (n, 12)
            else:
                lo = None
                lead_is_off = np.zeros(x.shape, bool)
            buf = np.concatenate([self._carry, x]) if self._carry.shape[0] else x
            boff = np.concatenate([self._carry_off, lead_is_off]) if self._carry_off.shape[0] else lead_is_off
            k = buf.shape[0] // self._factor
            if k:
                m = k * self._factor
                dec = buf[:m].reshape(k, self._factor, 12).mean(axis=1)
                doff = boff[:m].reshape(k, self._factor, 12).any(axis=1)
                self._write(self._highpass(dec, doff).astype(np.float32))
            self._carry = buf[k * self._factor:].copy()
            self._carry_off = boff[k * self._factor:].copy()
            self._samples_in += x.shape[0]
            self._last_sample_time = time.time()
            if lo is not None and lo.shape[0]:
                self._have_live_lead_off = True
                off = [e for e, b in zip(ELECTRODES, lo[-1]) if b]
                if off != self._lead_off_live:
                    self._lead_off_live = off
                    self._bump("electrodes", {"electrodes": self._electrodes_locked(),
                                              "leads": self._leads_locked()})
            self._bump("samples", None)

    def push_block(self, block: Any) -> None:
        """Convenience for a firmware_bridge.samples.SampleBlock."""
        self.push_samples(block.first_index, block.fs, block.leads_uv, getattr(block, "lead_off", None))

    def push_quality(self, quality: dict[str, Any]) -> None:
        """Latest signal-quality verdict: {verdict, reasons, electrodes_off, noisy_leads, leads, heart_rate?}."""
        q = _jsonable(dict(quality))
        with self._cond:
            self._quality = q
            hr = q.get("heart_rate")
            if isinstance(hr, (int, float)) and math.isfinite(hr):
                self._heart_rate = float(hr)
            self._bump("quality", {"quality": q, "electrodes": self._electrodes_locked(),
                                   "leads": self._leads_locked(), "heart_rate": self._heart_rate})

    def push_heart_rate(self, bpm: float | None) -> None:
        with self._cond:
            self._heart_rate = None if bpm is None or not math.isfinite(bpm) else float(bpm)
            self._bump("heart_rate", self._heart_rate)

    def push_result(self, result: dict[str, Any], strip_uv: np.ndarray | None = None,
                    strip_fs: float | None = None) -> None:
        """A triage result (TriageResult.to_dict()), optionally with its raw strip ((n, 12) uV)."""
        r = _jsonable(dict(result))
        rid = str(r.get("id") or f"r{int(time.time() * 1000)}")
        r["id"] = rid
        strip = None
        if strip_uv is not None:
            strip = np.asarray(strip_uv, dtype=np.float32)
            if strip.ndim != 2 or strip.shape[1] != 12 or not strip_fs:
                raise ValueError(f"strip_uv must be (n, 12) with strip_fs, got {strip.shape}, fs={strip_fs}")
        with self._cond:
            self._results[rid] = _Entry(r, float(strip_fs) if strip is not None else None, strip)
            self._results.move_to_end(rid)
            while len(self._results) > self.history:
                self._results.popitem(last=False)
            with_strip = [e for e in self._results.values() if e.strip_uv is not None]
            for e in with_strip[:-self.strips_kept] if len(with_strip) > self.strips_kept else []:
                e.strip_uv, e.strip_fs = None, None
            self._latest_id = rid
            hr = r.get("heart_rate_bpm", r.get("heart_rate"))
            if isinstance(hr, (int, float)) and math.isfinite(hr):
                self._heart_rate = float(hr)
            alarms = list(r.get("alarms") or [])
            if isinstance(r.get("alarm"), dict):
                alarms.append(r["alarm"])
            for alarm in alarms:
                if isinstance(alarm, dict) and alarm.get("id"):
                    self._add_alarm_locked(alarm, rid)
            self._bump("result", self.summary(r))

    def _add_alarm_locked(self, alarm: dict[str, Any], result_id: str | None = None) -> dict[str, Any]:
        a = _jsonable(dict(alarm))
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
            self._bump("feedback", {"result_id": str(result_id), "feedback": _jsonable(dict(feedback))})

    def _feedback(self, result_id: Any) -> dict[str, Any] | None:
        if self.feedback_lookup is None or not result_id:
            return None
        try:
            fb = self.feedback_lookup(str(result_id))
        except Exception:  # a broken store must not take the page down
            log.exception("feedback_lookup(%r) failed", result_id)
            return None
        return _jsonable(dict(fb)) if fb else None

    def push_alarm(self, alarm: dict[str, Any]) -> None:
        """A new alarm or an update to one (same `id`), e.g. {"acknowledged": True, "by": ...}."""
        if not isinstance(alarm, dict) or not alarm.get("id"):
            raise ValueError("alarm must be a dict with an 'id'")
        with self._cond:
            self._add_alarm_locked(alarm)

    def set_status(self, status: dict[str, Any]) -> None:
        with self._cond:
            self._status = _jsonable(dict(status))
            self._bump("status", self._status)

    def set_patient_view(self, patient: dict[str, Any]) -> None:
        """The current patient context when it changed elsewhere (fleet over MQTT, CLI)."""
        with self._cond:
            self._patient = _patient_view(patient)
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
        patient = _patient_view(self._command("patient/set", body))
        with self._cond:
            self._patient = patient
            self._bump("patient", dict(self._patient))
            return dict(self._patient)

    def clear_patient(self) -> dict[str, Any]:
        """'New patient': forget age and sex."""
        patient = _patient_view(self._command("patient/clear", {}))
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
    def _electrodes_locked(self) -> dict[str, str]:
        """Per-electrode state 'off' / 'ok': from the front end's lead-off bits when it sends them
        (current to the last block), else from the last window's quality verdict."""
        if self._have_live_lead_off:
            off = set(self._lead_off_live)
        else:
            off = set((self._quality or {}).get("electrodes_off") or [])
        return {e: ("off" if e in off else "ok") for e in ELECTRODES}

    def _leads_locked(self) -> dict[str, str]:
        """Per-lead state from the quality gate: 'off' / 'noisy' / 'ok'."""
        q = self._quality or {}
        noisy = set(q.get("noisy_leads") or [])
        off_leads = set(q.get("off_leads") or [])
        per = next((q[k] for k in ("per_lead", "leads") if isinstance(q.get(k), dict)), {})
        out = {}
        live_off = set(self._lead_off_live)
        live = self._have_live_lead_off
        for lead in LEADS:
            # With live lead-off bits, "off" comes from them alone (the window's verdict is older).
            out[lead] = _lead_state(per.get(lead), lead in off_leads and not live, lead in noisy, ignore_off=live)
            if live_off & set(LEAD_ELECTRODES[lead]):
                out[lead] = "off"
        return out

    @staticmethod
    def summary(r: dict[str, Any]) -> dict[str, Any]:
        """The fields a results list needs (no CAM arrays)."""
        keys = ("id", "time", "record", "window", "triage_level", "alarm_priority", "triage", "priority",
                "level", "label", "probabilities", "heart_rate_bpm", "heart_rate", "patient", "quality",
                "model", "model_version", "alarms", "alarm", "gap_before", "notice", "rhythm")
        s = {k: r[k] for k in keys if k in r}
        expl = r.get("explanation")
        if isinstance(expl, dict):
            e = {k: expl[k] for k in ("class", "leads", "seconds", "summary") if k in expl}
            if isinstance(expl.get("findings"), list):   # findings without any CAM arrays
                e["findings"] = [{k: v for k, v in f.items() if k != "cam"} for f in expl["findings"]
                                 if isinstance(f, dict)]
            s["explanation"] = e
        return s

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

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
                "signal": {"fs_in": self._in_fs, "display_fs": self._out_fs, "seq": self._seq,
                           "samples_in": self._samples_in,
                           "last_sample_age_s": (None if self._last_sample_time is None
                                                 else round(time.time() - self._last_sample_time, 3))},
                "heart_rate": self._heart_rate,
                "quality": self._quality,
                "electrodes": self._electrodes_locked(),
                "leads": self._leads_locked(),
                "patient": dict(self._patient),
                "alarms": [dict(a) for a in self._alarms.values() if not a.get("acknowledged")],
                "latest_id": self._latest_id,
                "latest": self.summary(latest) if latest else None,
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
            return [_jsonable(dict(r)) for r in self.history_lookup(n) or []]
        except Exception:  # a broken store must not take the page down
            log.exception("history_lookup(%d) failed", n)
            return []

    def results(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first: in-memory results, topped up from the store (after a restart) when short."""
        with self._lock:
            items = list(self._results.values())[-limit:] if limit > 0 else []
            out = [self.summary(e.result) for e in reversed(items)]
        if len(out) < limit:
            seen = {r["id"] for r in out}
            out += [self.summary(r) for r in self._stored(limit) if r.get("id") not in seen][:limit - len(out)]
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
            r = _jsonable(dict(got)) if got else None
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
            end = self._seq
            oldest = max(0, end - self._cap)
            if max_seconds is not None:
                oldest = max(oldest, end - int(max_seconds * self._out_fs))
            reset = since is None or since > end or since < oldest
            start = oldest if reset else since
            n = end - start
            if n > 0:
                idx = np.arange(start, end) % self._cap
                rows = self._ring[idx].copy()
            else:
                rows = np.zeros((0, 12), np.float32)
            fs = self._out_fs
        return {"fs": fs, "start": start, "end": end, "leads": list(LEADS), "reset": bool(reset and since is not None),
                "data": _rows_to_json(rows)}

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


OFF_FLAGS = {"off", "electrode_off", "lead_off"}


def _lead_state(v: Any, off: bool = False, noisy: bool = False, ignore_off: bool = False) -> str:
    """'off' / 'noisy' / 'ok' from a quality per-lead entry ({verdict, flags} or a plain string).
    ignore_off: lead-off is known better elsewhere; judge only the noise part of the entry."""
    if isinstance(v, dict):
        flags = {str(f).lower() for f in (v.get("flags") or [])}
        verdict = str(v.get("verdict") or v.get("flag") or v.get("state") or "").lower()
    else:
        flags, verdict = set(), str(v or "").lower()
    if ignore_off:
        if flags & OFF_FLAGS or verdict == "off":
            return "ok"        # the window was unusable because of the electrode, not noise
    elif off or flags & OFF_FLAGS or verdict == "off":
        return "off"
    if noisy or verdict in ("unusable", "acceptable", "noisy", "noise", "bad") or flags:
        return "noisy"
    return "ok"


def _patient_view(p: Any) -> dict[str, Any]:
    """{"age", "sex"} with the daemon's "unknown" strings (PatientContext.to_dict) mapped to None."""
    if hasattr(p, "to_dict") and not isinstance(p, dict):
        p = p.to_dict()
    if not isinstance(p, dict):
        p = {}
    age, sex = p.get("age"), p.get("sex")
    age = float(age) if isinstance(age, (int, float)) and not isinstance(age, bool) and math.isfinite(age) else None
    sex = sex if sex in SEXES else None
    return {"age": age, "sex": sex}


def _rows_to_json(rows: np.ndarray) -> list[list[int | None]]:
    if rows.size == 0:
        return []
    r = np.rint(rows)
    bad = ~np.isfinite(r)
    if not bad.any():
        return r.astype(np.int32).tolist()
    r = np.where(bad, 0, r).astype(np.int32).tolist()
    for i, j in zip(*np.nonzero(bad)):
        r[i][j] = None
    return r


def _jsonable(x: Any) -> Any:
    """Plain JSON types for the page: the one converter (edge_app.jsonsafe), NaN/inf -> null."""
    return json_safe(x, unknown=str)
