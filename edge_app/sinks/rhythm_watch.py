"""The live rhythm watch: every sample block -> RhythmMonitor -> rhythm alarms and the rhythm label.

Why a stream subscriber (not part of the 10 s window pipeline): asystole, VF and VT must alarm within
seconds of onset (IEC 60601-2-27: VF alarm delay <= 10 s), not at the next analysis window, so the
watch sees every block the front end sends (BlockReceived) and decides once a second.

What it feeds the monitor: the model's own 100 Hz stream (the conditioning chain's StreamingResampler,
so the monitor sees what the model sees, at the rate the offline figures were measured at), with the
leads whose electrodes are flagged off or whose samples are missing left out. When no lead is left,
the monitor says nothing: an electrode off is a technical alarm (the quality gate's), never asystole.
A stream gap or a front-end reset starts the monitor afresh (no rhythm is inferred across a gap).

Alarms (IEC 60601-1-8 priorities) go through the daemon's alarm latch, which audits, persists and
publishes them like every other alarm: asystole, VF and VT are HIGH and raised the moment the monitor
switches to them; AF and SVT are MEDIUM. Each is cleared when the rhythm ends. The current rhythm
label ("sinus 72", "AF 130", "VT 190") is added to every result before it is stored (this sink is
subscribed ahead of the record sink for that reason). A triage aid, not a diagnosis.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from edge_app.messages import BlockReceived, ResultReady
from edge_app.signal_chain.conditioning import StreamingResampler
from edge_app.signal_chain.rhythm import MONITOR_FS, RhythmChange, RhythmMonitor
from firmware_bridge.leads import ELECTRODES, LEAD_ELECTRODES, LEADS

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from edge_app.dispatcher import Dispatcher
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger("edge_app.rhythm")

DISCLAIMER = "Triage aid, not a diagnosis: check the patient and the ECG now."
#: rhythm -> (alarm code, priority, wording). Rhythms not listed raise no alarm.
RHYTHM_ALARMS: dict[str, tuple[str, str, str]] = {
    "asystole": ("asystole", "high", "ASYSTOLE: no QRS complex for {since:.0f} s."),
    "VF": ("ventricular_fibrillation", "high", "VENTRICULAR FIBRILLATION / FLUTTER suspected."),
    "VT": ("ventricular_tachycardia", "high", "VENTRICULAR TACHYCARDIA suspected, {rate:.0f} bpm."),
    "AF": ("atrial_fibrillation", "medium", "Atrial fibrillation suspected, {rate:.0f} bpm."),
    "SVT": ("supraventricular_tachycardia", "medium", "Supraventricular tachycardia suspected, {rate:.0f} bpm."),
}
RHYTHM_ALARM_CODES = tuple(code for code, _, _ in RHYTHM_ALARMS.values())
#: Leads each electrode disturbs, as column indices (a lead is unusable while any of its electrodes is off).
_LEAD_COLUMNS = [[ELECTRODES.index(e) for e in LEAD_ELECTRODES[lead]] for lead in LEADS]


class RhythmWatch:
    def __init__(self, alarms: "AlarmLatch"):
        self.alarms = alarms
        self.monitor: RhythmMonitor | None = None
        self._resampler: StreamingResampler | None = None
        self._fs_in: int | None = None
        self._active_code: str | None = None

    def subscribe(self, bus: "Dispatcher") -> None:
        bus.subscribe(BlockReceived, self.on_block)
        bus.subscribe(ResultReady, self.on_result)

    # -- stream --------------------------------------------------------------------------------
    def on_block(self, msg: BlockReceived) -> None:
        block = msg.block
        if self.monitor is None or block.fs != self._fs_in or block.gap_before != 0 or block.events:
            self._restart(block.fs)
        assert self._resampler is not None and self.monitor is not None
        lead_ok = self._leads_connected(block)
        out = self._resampler.process(block.leads_uv)
        if out.shape[0] == 0:
            return
        finite = np.isfinite(out)
        usable = lead_ok & finite.all(axis=0)
        signal = np.where(finite, out, 0.0)
        for change in self.monitor.push(signal, usable_leads=usable, signal_ok=bool(usable.any())):
            self._on_change(change)

    def _restart(self, fs: int) -> None:
        if self.monitor is not None:
            log.info("rhythm watch: stream restarted (gap, reset or new rate): rhythm analysis starts afresh")
        self._fs_in = int(fs)
        self._resampler = StreamingResampler(fs, MONITOR_FS, n_channels=len(LEADS), missing="propagate")
        self.monitor = RhythmMonitor(MONITOR_FS, len(LEADS))
        self._end_alarm()

    @staticmethod
    def _leads_connected(block: "SampleBlock") -> np.ndarray:
        off = np.asarray(block.lead_off, bool).any(axis=0) if block.lead_off.size else np.zeros(len(ELECTRODES), bool)
        return np.array([not off[cols].any() for cols in _LEAD_COLUMNS])

    # -- alarms --------------------------------------------------------------------------------
    def _on_change(self, change: RhythmChange) -> None:
        log.info("rhythm: %s -> %s (rate %s)", change.previous, change.rhythm,
                 "-" if change.rate_bpm is None else f"{change.rate_bpm:.0f}")
        spec = RHYTHM_ALARMS.get(change.rhythm or "")
        if spec is None:
            self._end_alarm()
            return
        code, priority, wording = spec
        if self._active_code is not None and self._active_code != code:
            self._end_alarm()
        message = wording.format(since=change.t_s - change.onset_s, rate=change.rate_bpm or 0.0)
        self.alarms.raise_condition(code, "physiological", priority, f"{message} {DISCLAIMER}")
        self._active_code = code

    def _end_alarm(self) -> None:
        if self._active_code is not None:
            self.alarms.clear_condition(self._active_code)
            self._active_code = None

    # -- results -------------------------------------------------------------------------------
    def on_result(self, msg: ResultReady) -> None:
        """Every result carries the rhythm at the time it was analysed (before it is stored)."""
        state = self.monitor.state.to_dict() if self.monitor is not None else None
        msg.result["rhythm"] = state or {"rhythm": None, "rate_bpm": None, "label": "rhythm unknown"}
