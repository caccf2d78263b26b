"""Rhythm detection on the live stream: asystole, VF/flutter, VT, AF, SVT, brady/tachycardia.

Why a streaming monitor (not a per-window classifier): the rhythms that kill within minutes must
raise an alarm within seconds of onset (IEC 60601-2-27: VF alarm delay <= 10 s), not at the next
10 s analysis window. The monitor therefore takes the signal block by block, decides every second on
the last few seconds, and keeps a running beat list (each beat classified normal or ventricular
against the patient's own template) for the rhythms that need many beats (AF, VT runs).

`ecg_rhythm()` runs exactly this monitor over a whole recording, so `ecg-edge measure` and the
EC57-style evaluation describe the code the daemon runs.

A triage aid, not a diagnosis: every label is a suggestion for a clinician looking at the strip.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .beats import BeatError, ecg_peaks
from .rhythm_features import (AF_MIN_RR, AF_RR, MIN_QRS_UV, P_BEATS, P_RATIO_MIN, P_WINDOW_S, V_CORR_MAX,
                              V_WIDTH_MS, V_WIDTH_RATIO, VT_CONSISTENCY_MIN, beat_segments, beat_widths_ms, noisy_leads,
                              p_wave_ratio, qrs_amplitudes_uv, rr_af_like, rr_nrmssd, shape_consistency,
                              shape_correlation, slope_energy, vf_bandpass, vf_features)

#: The labels `ecg-edge measure --json` reports (episodes[].rhythm). AFL is reserved: atrial
#: flutter with variable block is reported as AF; with fixed block as SVT/tachy.
RHYTHMS = ("AF", "AFL", "VT", "VF", "SVT", "asystole", "brady", "tachy", "sinus", "other")
#: Decided every STEP_S on the last BUFFER_S of signal.
STEP_S = 1.0
BUFFER_S = 10.0
#: A detected beat becomes final (classified, used for runs and RR) once this far from the end.
SETTLE_S = 0.35
#: No QRS for this long on a usable signal is asystole (IEC 60601-2-27 default).
ASYSTOLE_S = 4.0
#: VF is judged on the last VF_WINDOW_S of every usable lead.
VF_WINDOW_S = 4.0
#: Consecutive ventricular beats faster than VT_MIN_RATE (bpm) that make a VT episode (as the MIT-BIH
#: annotators and EC57 count them), and that make the current rhythm "VT" (the HIGH alarm): a run of
#: three or four beats is reported, a run of VT_ALARM_BEATS alarms.
VT_RUN_BEATS = 3
VT_ALARM_BEATS = 5
VT_MIN_RATE = 100.0
#: Rate limits (bpm) for the rate labels; SVT is narrow, regular and faster than SVT_RATE.
BRADY_RATE = 50.0
TACHY_RATE = 100.0
SVT_RATE = 150.0
REGULAR_NRMSSD_MAX = 0.06
#: A label must hold for this many consecutive decisions before it becomes the current rhythm
#: (rhythms in LIFE_THREATENING switch at once).
HOLD_STEPS = 3
LIFE_THREATENING = ("asystole", "VF", "VT")
#: Template of the patient's own normal beats: the last TEMPLATE_BEATS of them.
TEMPLATE_BEATS = 8


@dataclass
class Episode:
    start_s: float
    end_s: float
    rhythm: str

    def to_dict(self) -> dict:
        return {"start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2), "rhythm": self.rhythm}


@dataclass
class RhythmState:
    """What the monitor says now: the rhythm, its rate, since when (stream seconds)."""
    rhythm: str | None                      # None: not enough usable signal to say
    rate_bpm: float | None
    since_s: float
    t_s: float

    @property
    def label(self) -> str:
        """The short label a crew reads on every result: "sinus 72", "AF 130", "VT 190"."""
        if self.rhythm is None:
            return "rhythm unknown"
        if self.rate_bpm is None or self.rhythm in ("asystole", "VF"):
            return self.rhythm
        return f"{self.rhythm} {round(self.rate_bpm)}"

    def to_dict(self) -> dict:
        return {"rhythm": self.rhythm, "rate_bpm": None if self.rate_bpm is None else round(self.rate_bpm, 1),
                "label": self.label, "since_s": round(self.since_s, 2), "t_s": round(self.t_s, 2)}


@dataclass
class RhythmChange:
    """The current rhythm changed (raised to the alarm latch by the daemon)."""
    t_s: float
    rhythm: str | None
    previous: str | None
    rate_bpm: float | None
    onset_s: float            # where the evidence for the new rhythm starts (<= t_s)


@dataclass
class _Beats:
    """Final beats (absolute sample index), their class and width, kept for the last minute."""
    at: deque = field(default_factory=lambda: deque(maxlen=256))
    ventricular: deque = field(default_factory=lambda: deque(maxlen=256))
    template: deque = field(default_factory=lambda: deque(maxlen=TEMPLATE_BEATS))
    widths: deque = field(default_factory=lambda: deque(maxlen=TEMPLATE_BEATS))
    pre: deque = field(default_factory=lambda: deque(maxlen=P_BEATS))
    shapes: deque = field(default_factory=lambda: deque(maxlen=64))     # (window, leads) or None per beat
    shape_leads: deque = field(default_factory=lambda: deque(maxlen=64))


class RhythmMonitor:
    """Feed blocks of (n, leads) microvolts; read `state`, collect `changes` and `episodes`."""

    def __init__(self, fs: float, n_leads: int = 1, keep_beats: bool = False):
        if not fs or fs < 50:
            raise BeatError(f"rhythm monitor needs a sampling rate >= 50 Hz, got {fs}")
        self.fs = float(fs)
        self.n_leads = int(n_leads)
        self._cap = int(round(BUFFER_S * self.fs))
        self._buf = np.zeros((self._cap, self.n_leads))
        self._fill = 0                       # valid samples in _buf (<= _cap)
        self._total = 0                      # samples seen since start
        self._next_step = int(round(STEP_S * self.fs))
        self._usable = np.ones(self.n_leads, bool)
        self._signal_ok = True
        self._beats = _Beats()
        self._last_beat_any: int | None = None
        self._candidate: tuple[str | None, int, float] = (None, 0, 0.0)   # label, count, onset
        self.state = RhythmState(None, None, 0.0, 0.0)
        self.episodes: list[Episode] = []
        self._vt_runs: list[Episode] = []
        #: Every final beat (absolute sample, ventricular?) when keep_beats (evaluation only).
        self.beat_log: list[tuple[int, bool]] | None = [] if keep_beats else None

    # -- input -------------------------------------------------------------------------------
    def push(self, block: np.ndarray, usable_leads: np.ndarray | None = None,
             signal_ok: bool = True) -> list[RhythmChange]:
        """Add samples; returns the rhythm changes decided on them (usually none).

        usable_leads: leads the quality gate / lead-off flags accept; signal_ok False (electrode off,
        saturation, heavy noise) suspends rhythm decisions: those are technical alarms, never
        asystole or VF.
        """
        a = np.asarray(block, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.shape[1] != self.n_leads:
            raise BeatError(f"rhythm monitor expects {self.n_leads} leads, got {a.shape[1]}")
        if usable_leads is not None:
            self._usable = np.asarray(usable_leads, bool)
        self._signal_ok = bool(signal_ok)
        changes: list[RhythmChange] = []
        start = 0
        while start < a.shape[0]:
            take = min(a.shape[0] - start, self._next_step - self._total)
            self._append(a[start:start + take])
            start += take
            if self._total >= self._next_step:
                self._next_step += int(round(STEP_S * self.fs))
                change = self._decide()
                if change is not None:
                    changes.append(change)
        return changes

    def finish(self) -> list[Episode]:
        """Close the open episode at the end of the signal; returns all episodes (time order)."""
        end = self._total / self.fs
        if self.episodes and self.episodes[-1].end_s < 0:
            self.episodes[-1].end_s = end
        eps = [e for e in self.episodes if e.rhythm is not None] + self._vt_runs
        return sorted(_merge(eps), key=lambda e: e.start_s)

    def _append(self, a: np.ndarray) -> None:
        n = a.shape[0]
        if n >= self._cap:
            self._buf[:] = a[-self._cap:]
            self._fill = self._cap
        else:
            self._buf = np.roll(self._buf, -n, axis=0)
            self._buf[-n:] = a
            self._fill = min(self._cap, self._fill + n)
        self._total += n

    # -- decisions ---------------------------------------------------------------------------
    def _decide(self) -> RhythmChange | None:
        t = self._total / self.fs
        label, rate, onset = self._classify(t)
        cand, count, cand_onset = self._candidate
        if label == cand:
            count += 1
        else:
            cand, count, cand_onset = label, 1, onset
        self._candidate = (cand, count, cand_onset)
        current = self.state.rhythm
        if cand == current:
            self.state = RhythmState(current, rate, self.state.since_s, t)
            return None
        if count < HOLD_STEPS and cand not in LIFE_THREATENING and cand is not None:
            self.state = RhythmState(current, self.state.rate_bpm if current else None, self.state.since_s, t)
            return None
        if cand is None and count < HOLD_STEPS:
            return None
        self.state = RhythmState(cand, rate, cand_onset, t)
        self._open_episode(cand, cand_onset)
        return RhythmChange(t, cand, current, rate, cand_onset)

    def _open_episode(self, rhythm: str | None, onset: float) -> None:
        """Keep the episodes a timeline without overlaps: evidence that reaches back (AF is
        recognised over many beats) replaces what was said about that stretch before."""
        eps = self.episodes
        while eps and eps[-1].start_s >= onset:
            gone = eps.pop()
            if gone.rhythm == rhythm:
                onset = gone.start_s
        if eps and eps[-1].rhythm == rhythm:
            eps[-1].end_s = -1.0
            return
        if eps:
            eps[-1].end_s = onset
        eps.append(Episode(onset, -1.0, rhythm))

    def _classify(self, t: float) -> tuple[str | None, float | None, float]:
        fs, n = self.fs, self._fill
        x = self._buf[self._cap - n:]
        usable = self._usable & (np.ptp(x, axis=0) > 20.0) if n else self._usable
        if not self._signal_ok or n < int(VF_WINDOW_S * fs) or not usable.any():
            return None, None, t
        # Noise (muscle, a loose electrode) makes beats of its own: leads drowned in it are left out, and
        # with most leads noisy nothing is said (the quality gate raises the technical alarm).
        noisy = noisy_leads(x[-int(VF_WINDOW_S * fs):][:, usable], fs)
        if noisy.sum() * 2 > noisy.size:
            return None, None, t
        usable = usable.copy()
        usable[np.flatnonzero(usable)[noisy]] = False
        xu = x[:, usable]
        # VF / flutter: the wave itself, on every usable lead.
        w = int(VF_WINDOW_S * fs)
        band = vf_bandpass(xu[-max(w, int(2 * fs)) - int(fs):], fs)[-w:]
        votes = [vf_features(band[:, k], fs).fibrillation for k in range(band.shape[1])]
        if sum(votes) * 2 > len(votes):                # most usable leads (both of two) show it
            return "VF", None, t - VF_WINDOW_S
        self._update_beats(x, usable, t)
        last = self._last_beat_any
        since_last = t - (last / fs) if last is not None else n / fs
        if since_last >= ASYSTOLE_S and n >= int(ASYSTOLE_S * fs):
            return "asystole", None, t - since_last
        return self._beat_rhythm(t)

    def _update_beats(self, x: np.ndarray, usable: np.ndarray, t: float) -> None:
        fs = self.fs
        try:
            peaks = ecg_peaks(x, fs, usable_leads=usable if x.shape[1] > 1 else None)
        except BeatError:
            return
        offset = self._total - x.shape[0]
        peaks = peaks[qrs_amplitudes_uv(x[:, usable], peaks, self.fs) >= MIN_QRS_UV]
        if peaks.size:
            self._last_beat_any = max(self._last_beat_any or 0, int(peaks[-1]) + offset)
        settle = self._total - int(SETTLE_S * fs)
        beats = self._beats
        last_final = beats.at[-1] if beats.at else -1
        new = [int(p) for p in peaks if offset + p < settle and offset + p > last_final + int(0.15 * fs)]
        if not new:
            return
        xu = x[:, usable]
        primary = x[:, 1] if x.shape[1] >= 12 and usable[1] else xu[:, 0]
        pb, pa = int(round(P_WINDOW_S[0] * fs)), int(round(P_WINDOW_S[1] * fs))
        new_arr = np.asarray(new)
        segs, kept = beat_segments(x, new_arr, fs)
        widths = beat_widths_ms(slope_energy(xu, fs), new_arr, fs)
        k = 0
        for i, p in enumerate(new):
            seg = segs[k] if kept[i] else None
            k += int(kept[i])
            ventricular = self._is_ventricular(seg, widths[i], usable)
            beats.at.append(offset + p)
            beats.ventricular.append(ventricular)
            beats.shapes.append(seg)
            beats.shape_leads.append(usable)
            if self.beat_log is not None:
                self.beat_log.append((offset + p, ventricular))
            if not ventricular and p - pb >= 0 and p + pa < primary.size:
                beats.pre.append(primary[p - pb:p + pa + 1].copy())
            if not ventricular and seg is not None:
                beats.template.append(seg)
                if np.isfinite(widths[i]):
                    beats.widths.append(float(widths[i]))
        self._record_vt_run()

    def _is_ventricular(self, seg: np.ndarray | None, width: float, usable: np.ndarray) -> bool:
        beats = self._beats
        if seg is None or len(beats.template) < 3 or not np.isfinite(width):
            return False
        corr = shape_correlation(seg, np.mean(np.asarray(beats.template), axis=0), usable)
        ref_width = float(np.median(beats.widths)) if beats.widths else width
        if corr >= V_CORR_MAX:
            return False
        return width >= V_WIDTH_RATIO * ref_width or width >= V_WIDTH_MS

    def _p_waves_present(self) -> bool:
        """A P wave on the average of the last normal beats (averaging cancels fibrillatory waves)."""
        pre = self._beats.pre
        return len(pre) >= P_BEATS // 2 and p_wave_ratio(np.asarray(pre), self.fs) >= P_RATIO_MIN

    def _trailing_run(self) -> int:
        """Ventricular beats at the end of the beat list, if they look alike (else 0: noise)."""
        run = 0
        for v in reversed(self._beats.ventricular):
            if not v:
                break
            run += 1
        if run < VT_RUN_BEATS:
            return run
        shapes = [s for s in list(self._beats.shapes)[-run:] if s is not None]
        leads = self._beats.shape_leads[-1]
        if len(shapes) < VT_RUN_BEATS:
            return 0
        return run if shape_consistency(shapes, leads) >= VT_CONSISTENCY_MIN else 0

    def _record_vt_run(self) -> None:
        """VT episodes are runs of >= VT_RUN_BEATS ventricular beats faster than VT_MIN_RATE."""
        run = self._trailing_run()
        if run < VT_RUN_BEATS:
            return
        at = list(self._beats.at)[-run:]
        rate = 60.0 * self.fs / float(np.median(np.diff(at)))
        if rate < VT_MIN_RATE:
            return
        start, end = at[0] / self.fs, at[-1] / self.fs
        if self._vt_runs and self._vt_runs[-1].end_s >= start - 1e-9:
            self._vt_runs[-1].end_s = end
        else:
            self._vt_runs.append(Episode(start, end, "VT"))

    def _beat_rhythm(self, t: float) -> tuple[str | None, float | None, float]:
        fs = self.fs
        at = np.asarray(self._beats.at, dtype=np.int64)
        ven = np.asarray(self._beats.ventricular, dtype=bool)
        recent = at >= self._total - int(BUFFER_S * fs)
        if recent.sum() < 3:
            return "other", None, t
        rr_recent = np.diff(at[recent]) / fs
        rate = 60.0 / float(np.median(rr_recent))
        run = self._trailing_run()
        if run >= VT_ALARM_BEATS:
            run_rate = 60.0 * fs / float(np.median(np.diff(at[-run:])))
            if run_rate >= VT_MIN_RATE:
                return "VT", run_rate, at[-run] / fs
        # AF: irregularity of the RR intervals between normal beats only.
        normal_pair = ~ven[1:] & ~ven[:-1]
        rr = (np.diff(at) / fs)[normal_pair][-AF_RR:]
        if rr.size >= AF_MIN_RR and rr_af_like(rr) and not self._p_waves_present():
            n_used = min(AF_RR, rr.size)
            return "AF", rate, max(0.0, t - float(np.sum(rr[-n_used:])))
        narrow_regular = rr.size >= 4 and rr_nrmssd(rr[-8:]) < REGULAR_NRMSSD_MAX
        if rate >= SVT_RATE and narrow_regular and not ven[recent].any():
            return "SVT", rate, t
        if rate >= TACHY_RATE:
            return "tachy", rate, t
        if rate < BRADY_RATE:
            return "brady", rate, t
        if ven[recent].mean() > 0.2 or not narrow_regular:
            return "other", rate, t
        return "sinus", rate, t


def _merge(eps: list[Episode]) -> list[Episode]:
    """Join touching episodes of the same rhythm (a VT run inside a VT state is one episode)."""
    out: list[Episode] = []
    for e in sorted(eps, key=lambda e: (e.start_s, e.end_s)):
        if out and out[-1].rhythm == e.rhythm and e.start_s <= out[-1].end_s + 0.5:
            out[-1].end_s = max(out[-1].end_s, e.end_s)
        else:
            out.append(Episode(e.start_s, e.end_s, e.rhythm))
    return out


#: The rate the daemon's monitor runs at (its 100 Hz analysis stream); recordings at other rates are
#: resampled to it, so offline figures describe the device.
MONITOR_FS = 100.0


def rhythm_analysis(x: np.ndarray, fs: float, block_s: float = 1.0) -> tuple[list[Episode], list[RhythmChange]]:
    """Episodes and the live monitor's changes (alarm moments) for a whole recording (n,) or (n, leads)
    in microvolts, resampled to MONITOR_FS and fed block by block as the daemon feeds it."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if not np.all(np.isfinite(a)):
        raise BeatError("ECG contains NaN or infinite samples: fill or cut the gap before rhythm analysis")
    if abs(float(fs) - MONITOR_FS) > 1e-9:
        from fractions import Fraction

        from scipy.signal import resample_poly   # offline only: the daemon's stream is already 100 Hz
        frac = Fraction(MONITOR_FS / float(fs)).limit_denominator(1000)
        a = resample_poly(a, frac.numerator, frac.denominator, axis=0)
    mon = RhythmMonitor(MONITOR_FS, a.shape[1])
    step = max(1, int(round(block_s * MONITOR_FS)))
    changes: list[RhythmChange] = []
    for i in range(0, a.shape[0], step):
        changes += mon.push(a[i:i + step])
    return mon.finish(), changes


def ecg_rhythm(x: np.ndarray, fs: float) -> list[Episode]:
    """Rhythm episodes of a whole recording (n,) or (n, leads), in microvolts, by the live monitor."""
    return rhythm_analysis(x, fs)[0]


__all__ = ["RHYTHMS", "Episode", "RhythmChange", "RhythmMonitor", "RhythmState", "ecg_rhythm", "rhythm_analysis"]
