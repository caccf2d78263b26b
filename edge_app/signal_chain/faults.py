"""Inject the front end's faults into real 12-lead windows (for validating the quality gate).

Mirrors firmware_bridge.simulator: faults act on the 8 *measured* channels (I, II, V1..V6) of an
ADS1298-class front end, the channels clip at the +/-400 mV input range, and the 4 other limb
leads are derived on the host afterwards, exactly as on the device. So a floating LA electrode
shows up in I, III, aVR, aVL, aVF and (through Wilson's terminal) in every chest lead, as it would.
"""
from __future__ import annotations

import numpy as np

from firmware_bridge.leads import CHANNELS, ELECTRODES, LEADS
from firmware_bridge.samples import derive_leads
#: Potential of a floating electrode: the simulator's own value (beyond the rail, so channels clip).
from firmware_bridge.simulator_faults import FLOATING_ELECTRODE_UV  # noqa: F401 - re-exported

#: Index of each measured channel in the 12-lead (PTB-XL) order.
_CH_IN_LEADS = np.array([LEADS.index(c) for c in CHANNELS])


def to_channels(leads_uv: np.ndarray) -> np.ndarray:
    """(n, 12) leads -> (n, 8) measured channels I, II, V1..V6."""
    return np.asarray(leads_uv, dtype=np.float64)[:, _CH_IN_LEADS]


#: One ADC count of the simulated ADS1298 (Vref 2.4 V, gain 6): 47.684 nV, as the simulator reports it.
LSB_UV = round(2.4e6 / 6 / 2 ** 23 * 1e6) / 1e6
#: The 24-bit converter's limits in microvolts (asymmetric by one count, like the device).
ADC_MIN_UV = -(2 ** 23) * LSB_UV
ADC_MAX_UV = (2 ** 23 - 1) * LSB_UV


def _finish(ch: np.ndarray) -> np.ndarray:
    return derive_leads(np.clip(ch, ADC_MIN_UV, ADC_MAX_UV))


def electrode_off(leads_uv: np.ndarray, fs: float, electrode: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (12-lead window with that electrode floating, lead-off flags (n, 9) as the front end sets them)."""
    if electrode not in ELECTRODES:
        raise ValueError(f"electrode must be one of {', '.join(ELECTRODES)}, got {electrode!r}")
    ch = to_channels(leads_uv)
    n = ch.shape[0]
    t = np.arange(n) / fs
    d = FLOATING_ELECTRODE_UV + 2000.0 * np.sin(2 * np.pi * 50.0 * t)
    delta = np.zeros((n, 8))
    if electrode in ("RA", "LA", "LL"):
        delta[:, 2:] -= (d / 3.0)[:, None]               # Wilson's central terminal moves
        if electrode == "RA":
            delta[:, 0] -= d
            delta[:, 1] -= d
        elif electrode == "LA":
            delta[:, 0] += d
        else:
            delta[:, 1] += d
    else:
        delta[:, CHANNELS.index(electrode)] += d
    flags = np.zeros((n, len(ELECTRODES)), dtype=bool)
    flags[:, ELECTRODES.index(electrode)] = True
    return _finish(ch + delta), flags


def noise(leads_uv: np.ndarray, amplitude_uv: float, rng: np.random.Generator) -> np.ndarray:
    """EMG-like broadband noise (differenced white noise, amplitude_uv RMS) on all 8 channels."""
    ch = to_channels(leads_uv)
    w = rng.normal(size=(ch.shape[0] + 1, 8))
    return _finish(ch + np.diff(w, axis=0) / np.sqrt(2.0) * amplitude_uv)


def flat(leads_uv: np.ndarray, channels: tuple[str, ...] | None = None) -> np.ndarray:
    """Channels reading 0 (a dead input); all 8 channels when channels is None (simulator 'flat')."""
    ch = to_channels(leads_uv)
    sel = range(8) if channels is None else [CHANNELS.index(c) for c in channels]
    for i in sel:
        ch[:, i] = 0.0
    return _finish(ch)


def saturate(leads_uv: np.ndarray, channels: tuple[str, ...] | None = None) -> np.ndarray:
    """Channels pinned at the positive rail (simulator 'saturate' pins all 8)."""
    ch = to_channels(leads_uv)
    sel = range(8) if channels is None else [CHANNELS.index(c) for c in channels]
    for i in sel:
        ch[:, i] = ADC_MAX_UV
    return _finish(ch)


def wander(leads_uv: np.ndarray, fs: float, amplitude_uv: float, freq_hz: float,
           rng: np.random.Generator) -> np.ndarray:
    """Sinusoidal baseline wander with a random phase per channel."""
    ch = to_channels(leads_uv)
    t = np.arange(ch.shape[0]) / fs
    ph = rng.uniform(0, 2 * np.pi, 8)
    return _finish(ch + amplitude_uv * np.sin(2 * np.pi * freq_hz * t[:, None] + ph))


def mains(leads_uv: np.ndarray, fs: float, amplitude_uv: float, freq_hz: float,
          rng: np.random.Generator) -> np.ndarray:
    """Mains hum with a random gain 0.5-1 per channel (aliases if freq_hz >= fs/2, as sampling would)."""
    ch = to_channels(leads_uv)
    t = np.arange(ch.shape[0]) / fs
    g = rng.uniform(0.5, 1.0, 8)
    return _finish(ch + amplitude_uv * g * np.sin(2 * np.pi * freq_hz * t[:, None]))
