"""R-peak detection, heart rate and RR measurements for a triage display.

Why this design:
- A Pan-Tompkins-class detector (band-pass, slope energy, moving-window integration, adaptive
  signal/noise thresholds, search-back for missed beats, T- and P-wave rejection) is well understood,
  explainable to a clinician and has published accuracy on MIT-BIH (Pan & Tompkins 1985;
  Hamilton & Tompkins 1986). Every constant is in seconds or Hz, so it runs at any sampling rate.
- 12-lead input: each lead's slope energy is normalised by its own typical QRS energy and the
  leads are combined with a trimmed mean (the largest quarter dropped per sample), so a QRS seen
  by many leads stands out while noise on one or two leads (a loose electrode, muscle) cannot
  create beats on its own; flat, railed and floating leads are left out.
- Vectorised with numpy and scipy.signal's compiled kernels (dsp.py, without scipy.signal's import cost); the only Python loop runs over candidate peaks (a few per
  second), never over samples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from . import dsp

#: Band-pass for QRS energy (Hz). Pan-Tompkins used 5-15 Hz; a slightly wider band keeps
#: narrow QRS energy at low rates while rejecting P/T waves and baseline.
QRS_BAND_HZ = (5.0, 18.0)
#: Moving-window integration length (s): about one QRS width.
MWI_S = 0.12
#: Physiological refractory period (s): no two beats closer than this (300 bpm) ...
REFRACTORY_S = 0.2
#: ... except in a fast rhythm, where it shrinks with the running RR average (REFRACTORY_RR of it)
#: down to this (375 bpm): at 265 bpm a fixed 200 ms lost one beat in five (ventricular flutter and
#: fast VT live there).
REFRACTORY_MIN_S = 0.16
REFRACTORY_RR = 0.75
#: Within this time of the previous beat a candidate with much less slope is a T wave (s).
T_WAVE_S = 0.36
#: ... and only when it comes early for the rhythm (fraction of the mean RR), so a fast regular
#: tachycardia is not halved.
T_WAVE_RR = 0.7
#: A much smaller detection this close before a QRS is a P wave, not a beat (s).
P_WAVE_S = 0.3
#: Primary threshold between the running noise and signal peak levels (envelope amplitude).
THRESHOLD_FRACTION = 0.4
#: A preceding detection with less than this envelope ratio to the QRS after it is a P wave.
P_WAVE_RATIO = 0.63
#: ... and only when it came early for the rhythm (fraction of the mean RR): at 220 bpm two true
#: beats are < 300 ms apart and vary in size.
P_WAVE_RR = 0.6
#: Signal at each end of the input ignored for detection (filter edge transients; PTB-XL 100 Hz
#: files also end with a ~3-sample artefact), seconds.
EDGE_S = 0.1
#: Search back for a missed beat after this many mean RR intervals without a beat.
SEARCHBACK_RR = 1.66
#: Beats lost for this many mean RR intervals and nothing found by search-back: re-learn the signal
#: level from the next 8 s if it is less than half the running one (electrode contact / gain change).
RELEARN_RR = 3.0
#: A beat found by search-back needs at least this fraction of the recent QRS slope (median of the
#: last 8 beats): a pause holds P and T waves (non-conducted P waves in AV block), which are slow.
SEARCHBACK_SLOPE = 0.25


class BeatError(ValueError):
    """Input that cannot be analysed for beats (wrong shape, too short, bad rate)."""


@dataclass
class BeatMeasurements:
    """What a triage display shows about rhythm. A triage aid, not a diagnosis."""
    n_beats: int
    heart_rate_bpm: float | None          # from the median RR (robust to a missed/extra beat)
    mean_rr_ms: float | None
    rr_ms: list[float] = field(default_factory=list)
    rmssd_ms: float | None = None          # root mean square of successive RR differences
    rr_cv: float | None = None             # RR standard deviation / mean (irregularity)
    irregular: bool | None = None          # rr_cv above IRREGULAR_CV (e.g. atrial fibrillation)
    qrs_ms: float | None = None            # median QRS duration estimate (optional, approximate)

    def to_dict(self) -> dict:
        return asdict(self)


#: RR coefficient of variation above which the rhythm is called irregular on the display.
#: Sinus rhythm at rest rarely exceeds ~0.08 over 10 s; atrial fibrillation is typically > 0.15.
IRREGULAR_CV = 0.12


def _as_2d(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise BeatError(f"ECG must be (n,) or (n, leads), got shape {a.shape}")
    return a


def _check_fs(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs < 50.0:
        raise BeatError(f"sampling rate must be >= 50 Hz for R-peak detection, got {fs}")
    return fs


def _bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    lo, hi = QRS_BAND_HZ
    hi = min(hi, 0.45 * fs)
    sos = dsp.butter_sos(2, (lo, hi), "bandpass", fs)
    return dsp.sosfiltfilt(sos, x, axis=0)


def _combined_energy(x: np.ndarray, fs: float, usable: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Slope energy of each lead normalised to its own typical QRS level, combined across leads.

    Returns (combined energy (n,), band-passed leads (n, L)).
    """
    bp = _bandpass(x, fs)
    d = np.gradient(bp, axis=0) * fs
    e = d * d                                                    # (n, L)
    n = e.shape[0]
    # Typical QRS energy per lead: median of the 1-second maxima (robust to a few artefacts).
    seg = int(round(fs))
    nseg = max(1, n // seg)
    per_sec_max = e[: nseg * seg].reshape(nseg, seg, -1).max(axis=1) if n >= seg else e.max(axis=0, keepdims=True)
    scale = np.median(per_sec_max, axis=0)
    ok = np.isfinite(scale) & (scale > 0)
    if usable is not None:
        usable = np.asarray(usable, dtype=bool)
        if usable.shape != ok.shape:
            raise BeatError(f"usable_leads must have one flag per lead ({ok.size}), got shape {usable.shape}")
        ok &= usable
    if not ok.any():
        return np.zeros(n), bp
    en = e[:, ok] / scale[ok]
    if en.shape[1] >= 3:
        # Leads agree on a QRS: mean of the leads after discarding the largest per sample, so a
        # single noisy lead cannot dominate (a trimmed mean across leads).
        en_sorted = np.sort(en, axis=1)
        k = max(1, en.shape[1] // 4)
        comb = en_sorted[:, : en.shape[1] - k].mean(axis=1)
    else:
        comb = en.mean(axis=1)
    return comb, bp[:, ok] if ok.any() else bp


def _mwi(e: np.ndarray, fs: float) -> np.ndarray:
    w = max(1, int(round(MWI_S * fs)))
    # Centred window so the integrated peak sits on the QRS (no integration delay to undo).
    return np.convolve(e, np.ones(w) / w, mode="same")


def _initial_rr(cand: np.ndarray, h: np.ndarray, spk: float, n8: int, fs: float) -> float:
    """Starting RR average (samples): the median spacing of the learning phase's tall candidates when
    they look like a rhythm faster than 75 bpm, else 0.8 s. Starting every stream at 75 bpm made a
    250 bpm rhythm lose its first beats while the average crept down (it adapts slowly by design)."""
    tall = cand[(cand < n8) & (h > 0.5 * spk / 0.6)]
    if tall.size >= 5:
        rr = float(np.median(np.diff(tall)))
        if int(round(REFRACTORY_MIN_S * fs)) <= rr < 0.8 * fs:
            return rr
    return 0.8 * fs


def _detect(mwi: np.ndarray, slope: np.ndarray, fs: float) -> np.ndarray:
    """Adaptive dual-threshold decision over MWI candidate peaks (loop over candidates)."""
    refr_max = int(round(REFRACTORY_S * fs))
    refr_min = int(round(REFRACTORY_MIN_S * fs))
    cand = dsp.find_peaks(mwi, distance=max(1, refr_min // 2))
    if cand.size == 0:
        return cand
    # Work on the square root of the integrated energy (an amplitude): thresholds then do not
    # collapse when a few very large beats (PVCs) dominate the signal level.
    h = np.sqrt(mwi[cand])
    # Slope of each candidate: max |derivative| of the band-passed signal in its MWI window.
    half = max(1, int(round(MWI_S * fs / 2)))
    lo = np.clip(cand - half, 0, slope.size - 1)
    hi = np.clip(cand + half, 0, slope.size - 1)
    cs = np.maximum.reduceat(np.r_[slope, 0.0], np.ravel(np.column_stack([lo, hi + 1])))[::2]
    # Initial levels from the first ~8 s (learning phase), robust to one artefact.
    n8 = int(8 * fs)
    seg = int(2 * fs)
    first = mwi[: max(n8, seg)]
    nseg = max(1, first.size // seg)
    maxima = first[: nseg * seg].reshape(nseg, seg).max(axis=1) if first.size >= seg else np.array([first.max()])
    spk = float(np.sqrt(np.median(maxima))) * 0.6
    npk = float(np.sqrt(np.median(mwi[: max(n8, seg)]))) * 0.5
    # Re-learning level for any time t: the same statistic over the 8 s *from* t (2-s maxima),
    # used when the beats have been lost for a while (the signal got much smaller): looking forward
    # sees the QRS that end a true pause, so a pause does not lower the threshold onto P/T waves.
    nall = max(1, mwi.size // seg)
    seg_max = mwi[: nall * seg].reshape(nall, seg).max(axis=1) if mwi.size >= seg else np.array([mwi.max()])
    slope_from = 0         # beat_slope entries before this index belong to the old signal level
    rr_avg = _initial_rr(cand, h, spk, n8, fs)
    beats: list[int] = []
    beat_slope: list[float] = []
    last_i = -1            # index into cand of last accepted beat
    i = 0
    nc = cand.size
    while i < nc:
        p = cand[i]
        refr = int(min(refr_max, max(refr_min, REFRACTORY_RR * rr_avg)))
        th1 = npk + THRESHOLD_FRACTION * (spk - npk)
        th2 = 0.5 * th1
        # Search back: too long since the last beat -> look for the best candidate above th2.
        if beats and p - beats[-1] > SEARCHBACK_RR * rr_avg:
            j0 = last_i + 1
            sel = np.arange(j0, i)
            if sel.size:
                recent = beat_slope[max(slope_from, len(beat_slope) - 8):]
                slope_ref = float(np.median(recent)) if recent else 0.0
                sel = sel[(cand[sel] - beats[-1] > refr) & (h[sel] > th2)
                          & (cs[sel] > SEARCHBACK_SLOPE * slope_ref)]
            if not sel.size and p - beats[-1] > RELEARN_RR * rr_avg:
                s0 = min(int(p // seg), seg_max.size - 1)
                new_spk = max(float(np.sqrt(np.median(seg_max[s0: s0 + 4]))) * 0.6, npk)
                if new_spk < 0.5 * spk:                      # at least halves: cannot loop forever
                    spk = new_spk
                    slope_from = len(beat_slope)
                    continue                                 # search again with the new level
            if sel.size:
                # Prefer candidates away from the T-wave zone of the last beat.
                far = sel[cand[sel] - beats[-1] > T_WAVE_S * fs]
                pick = sel if far.size == 0 else far
                jb = int(pick[np.argmax(h[pick])])
                beats.append(int(cand[jb]))
                beat_slope.append(float(cs[jb]))
                spk = 0.25 * h[jb] + 0.75 * spk
                last_i = jb
                i = jb + 1
                continue
        if h[i] > th1:
            is_beat = True
            if beats:
                dt = p - beats[-1]
                if dt < refr:
                    # Keep the bigger of two candidates inside the refractory period.
                    if h[i] > h[last_i]:
                        beats[-1] = int(p)
                        beat_slope[-1] = float(cs[i])
                        last_i = i
                    i += 1
                    continue
                if dt < T_WAVE_S * fs and dt < T_WAVE_RR * rr_avg and cs[i] < 0.5 * beat_slope[-1]:
                    is_beat = False                          # T wave
                elif dt < P_WAVE_S * fs and dt < P_WAVE_RR * rr_avg and h[last_i] < P_WAVE_RATIO * h[i]:
                    # The previous "beat" was a tall P wave just before this, much steeper, QRS.
                    npk = 0.125 * h[last_i] + 0.875 * npk
                    beats.pop()
                    beat_slope.pop()
            if is_beat:
                if beats:
                    rr = p - beats[-1]
                    # RR average over recent *regular* intervals (Pan-Tompkins RR-average 2).
                    if 0.5 * rr_avg < rr < 1.66 * rr_avg or len(beats) < 3:
                        rr_avg = 0.875 * rr_avg + 0.125 * rr
                    elif rr < 0.5 * rr_avg:
                        rr_avg = 0.95 * rr_avg + 0.05 * rr
                    else:
                        rr_avg = 0.9 * rr_avg + 0.1 * rr
                beats.append(int(p))
                beat_slope.append(float(cs[i]))
                spk = 0.125 * h[i] + 0.875 * spk
                last_i = i
            else:
                npk = 0.125 * h[i] + 0.875 * npk
        else:
            npk = 0.125 * h[i] + 0.875 * npk
        i += 1
    return np.asarray(beats, dtype=np.int64)


def _refine(peaks: np.ndarray, bp: np.ndarray, fs: float) -> np.ndarray:
    """Move each detection to the R peak: the largest |band-passed| deflection within +/-80 ms,
    on the lead where the QRS is largest (vectorised over beats)."""
    if peaks.size == 0:
        return peaks
    w = int(round(0.08 * fs))
    n = bp.shape[0]
    offs = np.arange(-w, w + 1)
    idx = np.clip(peaks[:, None] + offs[None, :], 0, n - 1)          # (b, 2w+1)
    seg = np.abs(bp[idx])                                             # (b, 2w+1, L)
    lead = np.argmax(seg.max(axis=1), axis=1)                         # (b,)
    best = np.argmax(seg[np.arange(peaks.size), :, lead], axis=1)     # (b,)
    out = idx[np.arange(peaks.size), best]
    out = np.unique(out)
    # Refinement can merge two detections; keep the refractory rule.
    if out.size > 1:
        keep = np.r_[True, np.diff(out) >= int(round(REFRACTORY_S * fs))]
        out = out[keep]
    return out


def _live_leads(a: np.ndarray) -> np.ndarray:
    """Leads that carry a signal at all: not flat, not pinned at the ADC rail, no floating-electrode
    DC offset (same limits as the quality gate). Noisy leads stay: the lead combination copes."""
    from .quality import DC_OFF_UV, RAIL_UV
    dc = np.median(a, axis=0)
    rail = np.mean(np.abs(a) >= 0.98 * RAIL_UV, axis=0) > 0.01
    flat = np.ptp(a, axis=0) < 20.0
    live = ~rail & ~flat & (np.abs(dc) < DC_OFF_UV)
    return live if live.any() else np.ones(a.shape[1], dtype=bool)


def ecg_peaks(x: np.ndarray, fs: float, usable_leads: np.ndarray | None = None) -> np.ndarray:
    """R-peak sample indices of one lead (n,) or several leads (n, L), at the signal's own rate.

    usable_leads: optional (L,) bool to leave out leads the quality gate rejected; by default
    leads that are flat, railed or floating (electrode off) are left out.
    Raises BeatError for bad shapes, non-finite samples or a rate below 50 Hz.
    """
    fs = _check_fs(fs)
    a = _as_2d(x)
    if a.shape[0] < int(2 * fs):
        raise BeatError(f"need at least 2 s of signal for R-peak detection, got {a.shape[0] / fs:.2f} s")
    if not np.all(np.isfinite(a)):
        raise BeatError("ECG contains NaN or infinite samples")
    if usable_leads is None and a.shape[1] > 1:
        usable_leads = _live_leads(a)
    comb, bp = _combined_energy(a, fs, usable_leads)
    if not np.any(comb > 0):
        return np.zeros(0, dtype=np.int64)
    # The first and last 100 ms hold the band-pass's edge transients, which noise turns into
    # spurious "beats"; a QRS that close to the edge cannot be told from them anyway.
    edge = int(round(EDGE_S * fs))
    comb[:edge] = 0.0
    comb[comb.size - edge:] = 0.0
    mwi = _mwi(comb, fs)
    slope = np.sqrt(comb)
    det = _detect(mwi, slope, fs)
    return _refine(det, bp, fs).astype(np.int64)


def ecg_rate(peaks: np.ndarray, fs: float) -> float | None:
    """Heart rate in beats per minute from the median RR interval (None with fewer than 2 beats)."""
    p = np.asarray(peaks)
    if p.size < 2:
        return None
    rr = np.diff(p) / float(fs)
    return float(60.0 / np.median(rr))


def _qrs_ms(x: np.ndarray, peaks: np.ndarray, fs: float) -> float | None:
    """Approximate median QRS duration: span around each R peak where the summed slope energy
    (5-18 Hz band) exceeds 10 % of its local peak. Approximate by design (display only)."""
    if peaks.size < 3:
        return None
    bp = _bandpass(x, fs)
    e = np.sum(np.gradient(bp, axis=0) ** 2, axis=1)
    w = int(round(0.1 * fs))
    n = e.size
    ok = (peaks - w >= 0) & (peaks + w < n)
    if not ok.any():
        return None
    idx = peaks[ok][:, None] + np.arange(-w, w + 1)[None, :]
    seg = e[idx]
    above = seg >= 0.1 * seg.max(axis=1, keepdims=True)
    # Onset: first above-threshold sample in the 100 ms before the R peak; offset: last one in the
    # 100 ms after it (the derivative itself is zero at the R apex, so no "contiguous run").
    onset = np.argmax(above, axis=1)
    offset = above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    width = (offset - onset + 1) / fs * 1000.0
    return float(np.median(width))


def ecg_measure(x: np.ndarray, fs: float, peaks: np.ndarray | None = None,
                usable_leads: np.ndarray | None = None) -> BeatMeasurements:
    """Beats, heart rate, RR intervals and irregularity (RMSSD, RR CV) of one or more leads."""
    fs = _check_fs(fs)
    a = _as_2d(x)
    if peaks is None:
        peaks = ecg_peaks(a, fs, usable_leads)
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.size < 2:
        return BeatMeasurements(n_beats=int(peaks.size), heart_rate_bpm=None, mean_rr_ms=None)
    rr = np.diff(peaks) / fs * 1000.0
    rmssd = float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size >= 2 else None
    cv = float(np.std(rr) / np.mean(rr)) if rr.size >= 2 else None
    try:
        qrs = _qrs_ms(a if usable_leads is None else a[:, np.asarray(usable_leads, bool)], peaks, fs)
    except ValueError:
        qrs = None
    return BeatMeasurements(
        n_beats=int(peaks.size),
        heart_rate_bpm=ecg_rate(peaks, fs),
        mean_rr_ms=float(rr.mean()),
        rr_ms=[round(float(v), 1) for v in rr],
        rmssd_ms=rmssd,
        rr_cv=cv,
        irregular=None if cv is None else bool(cv > IRREGULAR_CV),
        qrs_ms=qrs,
    )
