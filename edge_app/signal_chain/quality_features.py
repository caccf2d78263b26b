"""The quality gate's measurements: per-lead signal-quality indices and physical measures of a window.

Why a module of its own: quality.py holds the policy (which measure makes a lead unusable, and the words a
crew reads); this module holds the arithmetic, which issue 17 made faster and lighter without changing a
figure (tests/test_signal_quality.py::test_gate_is_bit_identical_to_the_gate_before_issue_17): filter
designs cached, scipy.signal's own kernels through `dsp` (no `import scipy.signal`), one 0.5-40 Hz pass
for amplitude and kSQI, kSQI's fourth powers as two exact squarings, fewer partitions.
Every operation works column by column along time, so `ecg_quality_batch` can put the leads of many
windows side by side.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import dsp

#: ADS1298 at gain 6 and 2.4 V reference: input range +/-400 mV. A floating electrode drives its
#: channels into this rail.
RAIL_UV = 400_000.0
#: Broadband noise in 20-45 Hz: the lower quartile of 100 ms segment RMS values (QRS segments left out).
NOISE_PERCENTILE = 25.0


@lru_cache(maxsize=64)
def _bandpass_sos(fs: float, lo: float, hi: float) -> np.ndarray:
    return dsp.butter_sos(2, (lo, min(hi, 0.45 * fs)), "bandpass", fs)


def _bandpass(x: np.ndarray, fs: float, lo: float, hi: float) -> np.ndarray:
    return dsp.sosfiltfilt(_bandpass_sos(float(fs), float(lo), float(hi)), x, axis=0)


def _band_power(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (f >= lo) & (f <= hi)
    return p[m].sum(axis=0)


def _notch_mains(x: np.ndarray, fs: float, mains_hz: float | None = None) -> np.ndarray:
    """Remove mains hum (mains_hz, or both 50 and 60 Hz when None) before measuring noise: the model
    path (the resampler's stop band starts at 50 Hz) and the display (notch) remove it anyway, so hum
    alone is no reason to refuse a window."""
    for f0 in ((50.0, 60.0) if mains_hz is None else (float(mains_hz),)):
        if f0 < 0.45 * fs:
            b, a = dsp.iirnotch_ba(f0, 10.0, fs)
            x = dsp.filtfilt(b, a, x, axis=0)
    return x


def lead_features(x: np.ndarray, fs: float, mains_hz: float | None = None) -> dict[str, np.ndarray]:
    """Per-lead SQIs and physical measures of a window (n, L) in microvolts (vectorised over leads).

    Every operation works column by column along time, so the columns may be the leads of many windows
    side by side (`ecg_quality_batch`): each column's figures are bit-identical to computing it alone."""
    fs = float(fs)
    n = x.shape[0]
    dc = np.median(x, axis=0)
    xc = x - dc
    # Railed / pinned: fraction at the ADC rail, and plateau at the window's own extremes.
    at_rail = np.mean(np.abs(x) >= 0.98 * RAIL_UV, axis=0)
    hi = xc.max(axis=0)
    lo = xc.min(axis=0)
    rng = np.maximum(hi - lo, 1e-9)
    tol = np.maximum(1.0, 0.002 * rng)
    clip = np.maximum(np.mean(xc >= hi - tol, axis=0), np.mean(xc <= lo + tol, axis=0))
    clip = np.where(rng < 1.0, 0.0, clip)                          # a constant lead is "flat", not clipped
    # Clinical band 0.5-40 Hz: amplitude and flatness (and kSQI below, on the same band).
    bp = _bandpass(xc, fs, 0.5, 40.0)
    q = np.percentile(bp.T, [0.5, 99.5], axis=1)                   # bp.T: time contiguous, faster partition
    amp = q[1] - q[0]
    # Noise where the model looks: 20-45 Hz RMS over 100 ms segments; the lower quartile of the
    # segments, so QRS complexes (which hold 20-45 Hz energy too) are left out even at 200 bpm,
    # while continuous muscle noise, which fills every segment, is not.
    hf = _bandpass(_notch_mains(xc, fs, mains_hz), fs, 20.0, 45.0)
    seg = max(5, int(round(0.1 * fs)))
    nseg = max(1, n // seg)
    seg_rms = np.sqrt(np.mean(hf[: nseg * seg].reshape(nseg, seg, -1) ** 2, axis=1))
    noise = np.percentile(seg_rms, NOISE_PERCENTILE, axis=0)
    # Baseline excursion below 0.7 Hz.
    lp = dsp.sosfiltfilt(dsp.butter_sos(2, 0.7, "lowpass", fs), xc, axis=0)
    q1, q99 = np.percentile(lp.T, [1, 99], axis=1)                 # one partition; same values as two calls
    wander = q99 - q1
    # Published SQIs.
    nper = int(min(n, round(4 * fs)))
    f, p = dsp.welch_density(xc, fs, nper)
    p540 = _band_power(f, p, 5.0, 40.0)
    psqi = _band_power(f, p, 5.0, 15.0) / np.maximum(p540, 1e-12)
    p040 = _band_power(f, p, 0.0, 40.0)
    bassqi = 1.0 - _band_power(f, p, 0.0, 1.0) / np.maximum(p040, 1e-12)
    hp = bp                                                        # the same 0.5-40 Hz band-pass
    sd = hp.std(axis=0)
    # Fourth powers as two squarings: exact IEEE multiplies, so every machine gets the same bits (`** 4`
    # calls numpy's vectorised pow, whose last bit depends on the CPU's SIMD path and which cost a third
    # of the gate's time); kSQI moves by <= 4e-16 relative against `** 4` (tested).
    ksqi = np.where(sd > 0, np.mean(np.square(np.square(hp - hp.mean(axis=0))), axis=0)
                    / np.maximum(sd, 1e-12) ** 4, 0.0)
    # Mains hum amplitude (uV, sinusoid peak) from the spectrum around 50/60 Hz, where measurable.
    hum = np.zeros(x.shape[1])
    df = f[1] - f[0] if f.size > 1 else 1.0
    for f0 in ((50.0, 60.0) if mains_hz is None else (float(mains_hz),)):
        if f0 < 0.45 * fs:
            hum = np.maximum(hum, np.sqrt(2.0 * _band_power(f, p, f0 - 1.0, f0 + 1.0) * df))
    return dict(dc=dc, at_rail=at_rail, clip=clip, amp=amp, noise=noise, wander=wander, hum=hum,
                psqi=psqi, bassqi=bassqi, ksqi=ksqi)
