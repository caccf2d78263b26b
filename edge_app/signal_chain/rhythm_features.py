"""Features the rhythm detectors decide on: ventricular-fibrillation shape and per-beat QRS shape.

Why these features:
- VF / ventricular flutter have no QRS complexes to detect, so beat-based rules miss them. The signal
  itself is the evidence: a near-sinusoidal, high-duty-cycle wave. Three classic, explainable
  measures are combined: the VF-filter leakage of Kuo & Dillman (1978) (low when the wave is close
  to a sinusoid), the threshold-crossing sample count of Arafat et al. (2009) (the fraction of time
  the wave is far from the baseline, high in VF, low between QRS complexes) and the spectral
  concentration around the dominant 2.5-9 Hz frequency.
- Ventricular beats are wide and shaped differently from the patient's own conducted beats. Each
  beat is compared with a running template of the patient's recent normal beats (correlation) and
  its QRS width is measured from the slope energy, as beats.py does for the median QRS.
All thresholds are in physical units (s, Hz, fractions) and were chosen on the MIT-BIH development
records in ../shared/data/mitdb_dev only (docs/signal_chain.md, "Rhythm").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dsp

#: Band used for the VF measures (Hz): removes baseline wander and high-frequency noise.
VF_BAND_HZ = (1.0, 30.0)
#: VF-filter leakage below this looks like fibrillation / flutter (VFL on 207: p90 0.53;
#: every other rhythm on the development records: p10 >= 0.62).
VF_LEAKAGE_MAX = 0.55
#: Threshold-crossing sample fraction (|x| > 20 % of max) above this: the wave never rests.
VF_TCSC_MIN = 0.35
#: Share of 1-30 Hz power within +-1 Hz of the dominant frequency.
VF_CONCENTRATION_MIN = 0.5
#: Dominant frequency range of VF / flutter (Hz): 150-540 per minute.
VF_FREQ_HZ = (2.5, 9.0)

#: Beat window for shape comparison (s before, s after the R peak).
BEAT_WINDOW_S = (0.08, 0.12)
#: A beat whose correlation with the normal template is below this is "different".
V_CORR_MAX = 0.75
#: ... and it counts as ventricular when it is also this much wider than the template beats
V_WIDTH_RATIO = 1.2
#: ... or simply wider than this (ms) while different in shape.
V_WIDTH_MS = 120.0

#: AF: RR intervals considered (the most recent, ectopic-adjacent ones excluded), and the
#: irregularity measures' limits (normalised RMSSD, turning point ratio, RR Shannon entropy).
AF_RR = 24
AF_MIN_RR = 12
AF_NRMSSD_MIN = 0.10
AF_TPR = (0.5, 0.8)
AF_ENTROPY_MIN = 0.5
#: P waves: on the average of the last normal beats (lead II, or the first usable lead), the
#: peak-to-peak of the PR stretch (-300..-80 ms, detrended) relative to the QRS; below this the
#: P wave is absent, as in AF (development records: AF p90 0.10, sinus p10 >= 0.09 except 207).
P_RATIO_MIN = 0.07
P_BEATS = 16
P_WINDOW_S = (0.35, 0.06)
#: IEC 60601-2-27 asks heart-rate meters not to count QRS complexes of 0.15 mV or less: a detection whose
#: largest peak-to-peak (any usable lead, 1-30 Hz, +-60 ms) is below this is baseline noise, not a beat,
#: so a line with noise on it reads as asystole, not as a fast rhythm of tiny "beats".
MIN_QRS_UV = 150.0
#: The beats of a VT run look alike (median correlation with the run's mean shape): ventricular beats
#: from one focus do, while "beats" that noise makes up do not (MIT-BIH 105's noise did 12 false runs).
VT_CONSISTENCY_MIN = 0.8


@dataclass(frozen=True)
class VfFeatures:
    leakage: float
    tcsc: float
    concentration: float
    dominant_hz: float

    @property
    def fibrillation(self) -> bool:
        return (self.leakage < VF_LEAKAGE_MAX and self.tcsc > VF_TCSC_MIN
                and self.concentration > VF_CONCENTRATION_MIN
                and VF_FREQ_HZ[0] <= self.dominant_hz <= VF_FREQ_HZ[1])


def vf_bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    """1-30 Hz zero-phase band-pass along axis 0 (the VF measures' input)."""
    hi = min(VF_BAND_HZ[1], 0.45 * fs)
    return dsp.sosfiltfilt(dsp.butter_sos(2, (VF_BAND_HZ[0], hi), "bandpass", fs), x, axis=0)


def vf_leakage(seg: np.ndarray) -> float:
    """Kuo & Dillman's VF-filter leakage: how much of the wave a half-period delay does not cancel."""
    dx = float(np.abs(np.diff(seg)).sum())
    if dx <= 0.0:
        return 1.0
    half = int(np.floor(np.pi * float(np.abs(seg).sum()) / dx + 0.5))
    if half < 1 or half >= seg.size:
        return 1.0
    den = float((np.abs(seg[half:]) + np.abs(seg[:-half])).sum())
    return float(np.abs(seg[half:] + seg[:-half]).sum() / den) if den > 0 else 1.0


def vf_features(seg: np.ndarray, fs: float) -> VfFeatures:
    """The VF measures of one band-passed lead segment (a few seconds)."""
    seg = np.asarray(seg, dtype=np.float64) - float(np.mean(seg))
    peak = float(np.max(np.abs(seg))) if seg.size else 0.0
    if peak <= 0.0:
        return VfFeatures(1.0, 0.0, 0.0, 0.0)
    freqs, power = dsp.welch_density(seg[:, None], fs, nperseg=min(seg.size, int(4 * fs)))
    power = power[:, 0]
    band = (freqs >= VF_BAND_HZ[0]) & (freqs <= VF_BAND_HZ[1])
    p, f = power[band], freqs[band]
    total = float(p.sum())
    if total <= 0.0:
        return VfFeatures(1.0, 0.0, 0.0, 0.0)
    f0 = float(f[int(np.argmax(p))])
    conc = float(p[(f >= f0 - 1.0) & (f <= f0 + 1.0)].sum() / total)
    tcsc = float(np.mean(np.abs(seg) > 0.2 * peak))
    return VfFeatures(vf_leakage(seg), tcsc, conc, f0)


def noisy_leads(x: np.ndarray, fs: float) -> np.ndarray:
    """(L,) bool: leads whose 20-45 Hz noise floor (lower-quartile RMS of 100 ms segments, the quality
    gate's own measure and limit) makes them unusable. Below 100 Hz sampling nothing is judged noisy."""
    from .quality import NOISE_PERCENTILE, NOISE_UNUSABLE_UV
    hi = min(45.0, 0.45 * fs)
    if hi <= 25.0:
        return np.zeros(x.shape[1], bool)
    band = dsp.sosfiltfilt(dsp.butter_sos(2, (20.0, hi), "bandpass", fs), x, axis=0)
    seg = max(1, int(round(0.1 * fs)))
    n = (band.shape[0] // seg) * seg
    if n == 0:
        return np.zeros(x.shape[1], bool)
    rms = np.sqrt(np.mean(band[:n].reshape(-1, seg, band.shape[1]) ** 2, axis=1))
    return np.percentile(rms, NOISE_PERCENTILE, axis=0) > NOISE_UNUSABLE_UV


def beat_segments(x: np.ndarray, peaks: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(beats, kept): each kept beat's window (beats, window, leads), mean removed per lead."""
    before, after = int(round(BEAT_WINDOW_S[0] * fs)), int(round(BEAT_WINDOW_S[1] * fs))
    n = x.shape[0]
    kept = (peaks - before >= 0) & (peaks + after < n)
    if not kept.any():
        return np.zeros((0, before + after + 1, x.shape[1])), kept
    idx = peaks[kept][:, None] + np.arange(-before, after + 1)[None, :]
    seg = x[idx]                                   # (beats, window, leads)
    return seg - seg.mean(axis=1, keepdims=True), kept


def shape_correlation(beat: np.ndarray, template: np.ndarray, leads: np.ndarray) -> float:
    """Correlation of a beat with the template over the given leads (both (window, leads))."""
    a, b = beat[:, leads].ravel(), template[:, leads].ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 1.0


def beat_widths_ms(slope_energy: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """QRS width (ms) of each beat: span within +-100 ms of the peak where the slope energy exceeds
    10 % of its local maximum (the rule beats.py uses for the median QRS). NaN at the edges."""
    w = int(round(0.1 * fs))
    out = np.full(peaks.size, np.nan)
    ok = (peaks - w >= 0) & (peaks + w < slope_energy.size)
    if not ok.any():
        return out
    idx = peaks[ok][:, None] + np.arange(-w, w + 1)[None, :]
    seg = slope_energy[idx]
    above = seg >= 0.1 * seg.max(axis=1, keepdims=True)
    onset = np.argmax(above, axis=1)
    offset = above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    out[ok] = (offset - onset + 1) / fs * 1000.0
    return out


def slope_energy(x: np.ndarray, fs: float) -> np.ndarray:
    """Summed squared derivative of the 5-18 Hz band over leads (QRS energy), shape (n,)."""
    bp = dsp.sosfiltfilt(dsp.butter_sos(2, (5.0, min(18.0, 0.45 * fs)), "bandpass", fs), x, axis=0)
    return np.sum(np.gradient(bp, axis=0) ** 2, axis=1)


def shape_consistency(shapes: list[np.ndarray], leads: np.ndarray) -> float:
    """Median correlation of each beat with the beats' mean shape (1 = identical beats)."""
    mean = np.mean(np.asarray(shapes), axis=0)
    return float(np.median([shape_correlation(s, mean, leads) for s in shapes]))


def qrs_amplitudes_uv(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Largest peak-to-peak (any lead, 1-30 Hz band) within +-60 ms of each detection, microvolts."""
    if peaks.size == 0:
        return np.zeros(0)
    band = vf_bandpass(x, fs)
    w = int(round(0.06 * fs))
    lo = np.clip(peaks - w, 0, band.shape[0] - 1)
    hi = np.clip(peaks + w + 1, 1, band.shape[0])
    return np.array([np.ptp(band[a:b], axis=0).max() for a, b in zip(lo, hi)])


def p_wave_ratio(pre: np.ndarray, fs: float) -> float:
    """P-wave size on the average of beats (beats, P_WINDOW_S samples around R): peak-to-peak of the
    detrended PR stretch (-300..-80 ms) over the QRS's peak-to-peak (0 when there is no QRS)."""
    avg = np.mean(pre, axis=0)
    avg = avg - np.median(avg)
    lo, hi = int(round((P_WINDOW_S[0] - 0.30) * fs)), int(round((P_WINDOW_S[0] - 0.08) * fs))
    pr = avg[lo:hi]
    pr = pr - np.linspace(pr[0], pr[-1], pr.size)
    qrs = float(np.ptp(avg[int(round((P_WINDOW_S[0] - 0.05) * fs)):]))
    return float(np.ptp(pr)) / qrs if qrs > 0 else 0.0


def rr_nrmssd(rr: np.ndarray) -> float:
    if rr.size < 2:
        return 0.0
    return float(np.sqrt(np.mean(np.diff(rr) ** 2)) / np.mean(rr))


def rr_af_like(rr: np.ndarray) -> bool:
    """Irregularly irregular: large successive differences, random ups and downs, spread-out RRs
    (normalised RMSSD, turning point ratio and Shannon entropy as in Dash et al. 2009)."""
    nrmssd = rr_nrmssd(rr)
    mid = rr[1:-1]
    turns = np.sum(((mid > rr[:-2]) & (mid > rr[2:])) | ((mid < rr[:-2]) & (mid < rr[2:])))
    tpr = float(turns) / max(1, mid.size)
    hist, _ = np.histogram(rr, bins=16)
    p = hist[hist > 0] / rr.size
    entropy = float(-(p * np.log(p)).sum() / np.log(16))
    return nrmssd > AF_NRMSSD_MIN and AF_TPR[0] <= tpr <= AF_TPR[1] and entropy > AF_ENTROPY_MIN
