"""The live 12-lead trace the bedside page draws: decimated, high-passed, lead-off blanked, gap-broken.

Samples are decimated for display (a boxcar over `fs / display_fs` samples: 500 Hz -> 125 Hz by default) into
a ring of the last `ring_seconds`. Each display sample has a sequence number `seq`; clients ask for "everything
since seq N", and a gap (dropped samples, reconnect) is marked by a NaN row so the page breaks the trace instead
of drawing a false line across it.

Like a bedside monitor's "monitor mode", the trace is high-passed (first-order, 0.5 Hz) so electrode DC
offsets and wander do not push it off the screen, and samples of a lead whose electrode reports lead-off are
blanked (NaN) rather than drawn as a rail-to-rail line. Result strips are shown as the model sees them (the
contract's zero-phase 0.5 Hz baseline removal), not through this filter.

Not thread-safe on its own: LiveHub (hub.py) calls it under its lock. Electrode and lead states for the page
(off / noisy / ok) are here too, because the live lead-off bits are fresher than any window's verdict.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from firmware_bridge.leads import ELECTRODES, LEAD_ELECTRODES, LEADS

DISPLAY_HIGHPASS_HZ = 0.5
_DEP = np.array([[e in LEAD_ELECTRODES[lead] for e in ELECTRODES] for lead in LEADS], dtype=bool)  # (12, 9)
OFF_FLAGS = {"off", "electrode_off", "lead_off"}


class LiveStrip:
    def __init__(self, display_fs: float = 125.0, ring_seconds: float = 12.0):
        self.display_fs_target = float(display_fs)
        self.ring_seconds = float(ring_seconds)
        self.in_fs: float | None = None
        self.factor = 1
        self.out_fs = self.display_fs_target
        self.cap = 1
        self.ring = np.zeros((1, 12), np.float32)
        self.seq = 0                      # display samples written so far
        self.next_index: int | None = None
        self.samples_in = 0
        self.last_sample_time: float | None = None
        self.lead_off_live: list[str] = []
        self.have_live_lead_off = False   # the front end reports lead-off bits (fresher than the last window)
        self.hp_r = 0.0
        self._restart_filter()

    def _restart_filter(self) -> None:
        self.carry = np.zeros((0, 12), np.float64)
        self.carry_off = np.zeros((0, 12), bool)
        self.hp_x = np.full(12, np.nan)        # display high-pass state per lead (NaN = restart)
        self.hp_y = np.zeros(12)

    def _reset_ring(self, fs: float) -> None:
        self.in_fs = float(fs)
        self.factor = max(1, int(round(fs / self.display_fs_target)))
        self.out_fs = fs / self.factor
        self.cap = max(1, int(math.ceil(self.ring_seconds * self.out_fs)))
        self.ring = np.full((self.cap, 12), np.nan, np.float32)
        self.hp_r = math.exp(-2 * math.pi * DISPLAY_HIGHPASS_HZ / self.out_fs)
        self._restart_filter()

    def _highpass(self, decimated: np.ndarray, off: np.ndarray) -> np.ndarray:
        """First-order DC blocker per lead, restarted (at 0) after a lead-off or gap."""
        out = np.empty_like(decimated)
        prev_x, prev_y = self.hp_x, self.hp_y
        for i in range(decimated.shape[0]):
            x = decimated[i]
            bad = off[i] | ~np.isfinite(x)
            y = np.where(np.isnan(prev_x), 0.0, x - prev_x + self.hp_r * prev_y)
            y = np.where(bad, np.nan, y)
            prev_x = np.where(bad, np.nan, x)
            prev_y = np.where(bad, 0.0, y)
            out[i] = y
        self.hp_x, self.hp_y = prev_x, prev_y
        return out

    def _write(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if n == 0:
            return
        if n > self.cap:
            rows = rows[-self.cap:]
            self.seq += n - self.cap
            n = self.cap
        pos = self.seq % self.cap
        first = min(n, self.cap - pos)
        self.ring[pos:pos + first] = rows[:first]
        if first < n:
            self.ring[:n - first] = rows[first:]
        self.seq += n

    def push(self, first_index: int, fs: float, leads_uv: np.ndarray, lead_off: np.ndarray | None) -> bool:
        """Add a block ((n, 12) uV; lead_off (n, 9) bool or None). True when the live electrode status changed."""
        x = np.asarray(leads_uv, dtype=np.float64)
        if self.in_fs != float(fs):
            self._reset_ring(fs)
            self.next_index = None
        if self.next_index is not None and first_index != self.next_index:
            # A gap (or restart): drop the partial group, break the trace, restart the filter.
            self._restart_filter()
            self._write(np.full((1, 12), np.nan, np.float32))
        self.next_index = int(first_index) + x.shape[0]
        bits = None if lead_off is None else np.asarray(lead_off, dtype=bool)
        if bits is not None and bits.shape == (x.shape[0], len(ELECTRODES)):
            lead_is_off = (bits.astype(np.uint8) @ _DEP.T.astype(np.uint8)) > 0     # (n, 12)
        else:
            bits = None
            lead_is_off = np.zeros(x.shape, bool)
        buf = np.concatenate([self.carry, x]) if self.carry.shape[0] else x
        buf_off = np.concatenate([self.carry_off, lead_is_off]) if self.carry_off.shape[0] else lead_is_off
        groups = buf.shape[0] // self.factor
        if groups:
            used = groups * self.factor
            decimated = buf[:used].reshape(groups, self.factor, 12).mean(axis=1)
            decimated_off = buf_off[:used].reshape(groups, self.factor, 12).any(axis=1)
            self._write(self._highpass(decimated, decimated_off).astype(np.float32))
        self.carry = buf[groups * self.factor:].copy()
        self.carry_off = buf_off[groups * self.factor:].copy()
        self.samples_in += x.shape[0]
        self.last_sample_time = time.time()
        if bits is None or not bits.shape[0]:
            return False
        self.have_live_lead_off = True
        off = [e for e, b in zip(ELECTRODES, bits[-1]) if b]
        changed = off != self.lead_off_live
        self.lead_off_live = off
        return changed

    def since(self, since: int | None = None, max_seconds: float | None = None) -> dict[str, Any]:
        """Display samples after sequence number `since` (all buffered when None or out of range):
        {"fs", "start", "end", "leads": LEADS, "data": [[uV int or None] * 12, ...], "reset"}."""
        end = self.seq
        oldest = max(0, end - self.cap)
        if max_seconds is not None:
            oldest = max(oldest, end - int(max_seconds * self.out_fs))
        reset = since is None or since > end or since < oldest
        start = oldest if reset else since
        if end - start > 0:
            rows = self.ring[np.arange(start, end) % self.cap].copy()
        else:
            rows = np.zeros((0, 12), np.float32)
        return {"fs": self.out_fs, "start": start, "end": end, "leads": list(LEADS),
                "reset": bool(reset and since is not None), "data": rows_to_json(rows)}

    def signal(self) -> dict[str, Any]:
        return {"fs_in": self.in_fs, "display_fs": self.out_fs, "seq": self.seq, "samples_in": self.samples_in,
                "last_sample_age_s": (None if self.last_sample_time is None
                                      else round(time.time() - self.last_sample_time, 3))}

    # ------------------------------------------------------------------ electrode and lead states
    def electrodes(self, quality: dict[str, Any] | None) -> dict[str, str]:
        """Per-electrode 'off' / 'ok': from the front end's lead-off bits when it sends them (current to the
        last block), else from the last window's quality verdict."""
        if self.have_live_lead_off:
            off = set(self.lead_off_live)
        else:
            off = set((quality or {}).get("electrodes_off") or [])
        return {e: ("off" if e in off else "ok") for e in ELECTRODES}

    def leads(self, quality: dict[str, Any] | None) -> dict[str, str]:
        """Per-lead state from the quality gate: 'off' / 'noisy' / 'ok'."""
        q = quality or {}
        noisy = set(q.get("noisy_leads") or [])
        off_leads = set(q.get("off_leads") or [])
        per = next((q[k] for k in ("per_lead", "leads") if isinstance(q.get(k), dict)), {})
        live_off = set(self.lead_off_live)
        live = self.have_live_lead_off
        out = {}
        for lead in LEADS:
            # With live lead-off bits, "off" comes from them alone (the window's verdict is older).
            out[lead] = lead_state(per.get(lead), lead in off_leads and not live, lead in noisy, ignore_off=live)
            if live_off & set(LEAD_ELECTRODES[lead]):
                out[lead] = "off"
        return out


def lead_state(entry: Any, off: bool = False, noisy: bool = False, ignore_off: bool = False) -> str:
    """'off' / 'noisy' / 'ok' from a quality per-lead entry ({verdict, flags} or a plain string).
    ignore_off: lead-off is known better elsewhere; judge only the noise part of the entry."""
    if isinstance(entry, dict):
        flags = {str(f).lower() for f in (entry.get("flags") or [])}
        verdict = str(entry.get("verdict") or entry.get("flag") or entry.get("state") or "").lower()
    else:
        flags, verdict = set(), str(entry or "").lower()
    if ignore_off:
        if flags & OFF_FLAGS or verdict == "off":
            return "ok"        # the window was unusable because of the electrode, not noise
    elif off or flags & OFF_FLAGS or verdict == "off":
        return "off"
    if noisy or verdict in ("unusable", "acceptable", "noisy", "noise", "bad") or flags:
        return "noisy"
    return "ok"


def rows_to_json(rows: np.ndarray) -> list[list[int | None]]:
    """Display rows -> JSON: integer microvolts, NaN (a break in the trace) -> null."""
    if rows.size == 0:
        return []
    rounded = np.rint(rows)
    bad = ~np.isfinite(rounded)
    if not bad.any():
        return rounded.astype(np.int32).tolist()
    out = np.where(bad, 0, rounded).astype(np.int32).tolist()
    for i, j in zip(*np.nonzero(bad)):
        out[i][j] = None
    return out
