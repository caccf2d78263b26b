"""Signal conditioning: anti-aliased resampling to the model's 100 Hz, mains notch, baseline removal.

Why this design:
- The model reads 100 Hz (PTB-XL's rate); the front end samples at 500 Hz (or any WFDB rate).
  Resampling is a rational polyphase FIR (up/down = 100/fs): a linear-phase, *centred* low-pass,
  so output sample k sits exactly at time k / 100 s of the input (no group delay left to undo)
  and the waveform shape (ST segment, QRS) is not phase-distorted.
- One computation (`_polyphase`) serves the offline function used by training and tests and the
  streaming class used on the device, so they cannot drift apart; the streaming class only keeps
  the last few input samples between blocks. Streaming output (after `flush()`) equals the offline
  output to float rounding (tested: max |difference| <= STREAM_TOLERANCE_UV on real records fed in
  random block sizes).
- Ends are extended with the first/last sample value (not zeros), so a DC offset does not ring
  at the start of a stream.
- The anti-alias filter's stop band starts at 50 Hz: 50 Hz mains and its aliases are removed by
  the resampler itself, and 60 Hz mains (which would alias to 40 Hz) is attenuated >= 60 dB.
- Display/quality conditioning (`StreamingConditioner`, `ecg_clean`) is causal IIR (notch + Butterworth
  high-pass, second-order sections) with state carried across blocks. The model path does NOT use
  it: the model's own baseline removal is `contract.make_model_input` (zero-phase, per window).
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from . import dsp
from .contract import FS_HZ

#: Streaming vs offline resampling agree within this (microvolts), tested on real records.
STREAM_TOLERANCE_UV = 1e-6
#: Anti-alias low-pass: pass band edge, stop band edge (Hz, at the 100 Hz output) and attenuation.
PASS_HZ = 40.0
STOP_HZ = 50.0
STOP_DB = 60.0
#: Default display/quality conditioning.
HIGHPASS_HZ = 0.5
NOTCH_Q = 30.0
#: Output rows computed per vectorised step of the gather form (bounds memory).
_CHUNK = 4096
#: From this many outputs per call on, the strided form is used (same arithmetic, less memory and time).
_STRIDED_MIN = 64


class ConditioningError(ValueError):
    """Bad input to the conditioning chain (rate, shape, non-finite samples, config)."""


def _ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    if not np.isfinite(fs_in) or fs_in <= 0:
        raise ConditioningError(f"input sampling rate must be a positive number of Hz, got {fs_in}")
    fr = Fraction(float(fs_out) / float(fs_in)).limit_denominator(1000)
    if abs(float(fr) - fs_out / fs_in) > 1e-9 * fs_out / fs_in:
        raise ConditioningError(f"cannot resample {fs_in} Hz -> {fs_out} Hz with a rational ratio (denominator <= 1000)")
    return fr.numerator, fr.denominator


@lru_cache(maxsize=32)
def _design(fs_in: float, fs_out: float = FS_HZ) -> tuple[int, int, int, np.ndarray]:
    """(up, down, half, H) with H[phase, tap] the polyphase decomposition of the centred FIR."""
    up, down = _ratio(fs_in, fs_out)
    fs_up = fs_in * up
    if up == 1 and down == 1:
        h = np.array([1.0])
    else:
        pass_hz = min(PASS_HZ * fs_out / FS_HZ, 0.4 * min(fs_in, fs_out))
        stop_hz = min(STOP_HZ * fs_out / FS_HZ, 0.5 * min(fs_in, fs_out))
        # Kaiser window FIR: kaiserord(STOP_DB, transition) taps made odd (symmetric about a centre tap),
        # firwin at the band centre, gain `up` (tabulated design, identical to scipy.signal's; see dsp).
        h = dsp.kaiser_lowpass(STOP_DB, pass_hz, stop_hz, fs_up, up)
    half = (h.size - 1) // 2
    ntap = -(-h.size // up)
    hp = np.zeros(ntap * up)
    hp[: h.size] = h
    H = hp.reshape(ntap, up).T.copy()                     # H[p, t] = h[p + up * t]
    return up, down, half, H


def _polyphase(buf: np.ndarray, first: int, k0: int, k1: int, up: int, down: int, half: int,
               H: np.ndarray, check_nan: bool = True) -> np.ndarray:
    """Outputs k0..k1-1 of y[k] = sum_i h[i] * xu[k*down + half - i], xu = x upsampled by `up`.

    buf[j] holds input sample x[first + j]. The caller guarantees every needed index is in buf.
    Missing inputs (NaN, only with missing="propagate") make every output whose taps reach them NaN
    (check_nan=False: the caller knows buf holds none, which saves a pass over it per streaming block).

    Two evaluations with the same arithmetic (each output accumulated over taps 0, 1, 2, ... in order,
    so they agree bit for bit, tested): a gather + einsum for the few outputs of a small streaming block,
    and strided slices, one tap at a time, for many outputs (a replayed record): no (outputs x taps x
    channels) temporary (72 MB for 4096 outputs at 500 Hz), and 3-5x less time.
    """
    k_count = max(0, k1 - k0)
    nan = np.isnan(buf) if check_nan else None
    has_nan = nan is not None and bool(nan.any())
    src = np.where(nan, 0.0, buf) if has_nan else buf
    if k_count >= _STRIDED_MIN:
        out = _polyphase_strided(src, first, k0, k1, up, down, half, H)
        if has_nan:
            out[_polyphase_strided(nan.astype(np.float64), first, k0, k1, up, down, half, np.ones_like(H)) > 0] = np.nan
        return out
    out = np.empty((k_count, buf.shape[1]))
    ntap = H.shape[1]
    taps = np.arange(ntap)
    for a in range(k0, k1, _CHUNK):
        b = min(k1, a + _CHUNK)
        m = np.arange(a, b, dtype=np.int64) * down + half
        idx = (m // up)[:, None] - taps[None, :] - first             # (K, T)
        out[a - k0: b - k0] = np.einsum("kt,ktc->kc", H[m % up], src[idx])
        if has_nan:
            out[a - k0: b - k0][nan[idx].any(axis=1)] = np.nan
    return out


def _polyphase_strided(buf: np.ndarray, first: int, k0: int, k1: int, up: int, down: int, half: int,
                       H: np.ndarray) -> np.ndarray:
    """_polyphase for many outputs: the outputs k = k0 + r (mod up) share one polyphase branch and read
    the input every `down` samples, so each tap is one strided slice times one coefficient."""
    out = np.empty((k1 - k0, buf.shape[1]))
    ntap = H.shape[1]
    for r in range(min(up, k1 - k0)):
        n = len(range(k0 + r, k1, up))
        m0 = (k0 + r) * down + half
        p, j0 = m0 % up, m0 // up - first
        stop = j0 + down * (n - 1) + 1
        acc = H[p, 0] * buf[j0:stop:down]
        tmp = np.empty_like(acc)
        for t in range(1, ntap):                     # acc += h_t * x_t, without a temporary per tap
            np.multiply(buf[j0 - t:stop - t:down], H[p, t], out=tmp)
            acc += tmp
        out[r::up] = acc
    return out


def _as_2d(x: np.ndarray, allow_nan: bool = False) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    one = a.ndim == 1
    if one:
        a = a[:, None]
    if a.ndim != 2:
        raise ConditioningError(f"signal must be (n,) or (n, channels), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        if not allow_nan or np.isinf(a).any():
            raise ConditioningError("signal contains NaN or infinite samples" + (
                "" if allow_nan else " (pass missing='propagate' to mark outputs that depend on missing samples)"))
    return a, one


def _check_missing(missing: str) -> bool:
    if missing not in ("error", "propagate"):
        raise ConditioningError(f"missing must be 'error' or 'propagate', got {missing!r}")
    return missing == "propagate"


def n_output(n_in: int, fs_in: float, fs_out: float = FS_HZ) -> int:
    """Number of output samples the offline resampler gives for n_in inputs: ceil(n_in * up / down)."""
    up, down = _ratio(fs_in, fs_out)
    return -(-n_in * up // down)


def resample_to_model_rate(x_uv: np.ndarray, fs: float, fs_out: float = FS_HZ, missing: str = "error") -> np.ndarray:
    """Offline anti-aliased resampling (n, C) at fs -> (ceil(n*fs_out/fs), C) at fs_out (default 100 Hz).

    Output sample k is the signal at time k / fs_out (zero-phase, no delay). Units are unchanged.
    missing: "error" (NaN input is an error) or "propagate" (missing samples, NaN, make every output that
    depends on them NaN, per channel: a gap is never smoothed into signal).
    """
    a, one = _as_2d(x_uv, allow_nan=_check_missing(missing))
    if a.shape[0] == 0:
        raise ConditioningError("cannot resample an empty signal")
    up, down, half, H = _design(float(fs), float(fs_out))
    n = a.shape[0]
    k1 = -(-n * up // down)
    pad = half // up + H.shape[1] + 1
    buf = np.concatenate([np.repeat(a[:1], pad, axis=0), a, np.repeat(a[-1:], pad, axis=0)])
    y = _polyphase(buf, -pad, 0, k1, up, down, half, H)
    return y[:, 0] if one else y


class StreamingResampler:
    """Block-by-block form of `resample_to_model_rate` (same output, see STREAM_TOLERANCE_UV).

    process(block) returns every output sample whose input window is complete; `flush()` ends the
    stream (extends it with its last value, as the offline form does) and returns the rest.
    missing="propagate": NaN input samples (missing) make the outputs that depend on them NaN, exactly
    as the offline form with the same setting (the window assembler's model ring then shows the gap).
    Latency: output sample k (time k/100 s) is emitted once input sample ceil((k*down + half)/up)
    has arrived, i.e. `latency_samples` input samples (`latency_s` seconds) after its own time:
    91 samples = 0.182 s at 500 Hz.
    """

    def __init__(self, fs_in: float, fs_out: float = FS_HZ, n_channels: int | None = None, missing: str = "error"):
        self.allow_nan = _check_missing(missing)
        self.fs_in = float(fs_in)
        self.fs_out = float(fs_out)
        self.up, self.down, self.half, self.H = _design(self.fs_in, self.fs_out)
        self._n_channels_fixed = n_channels
        self.n_channels = n_channels
        self.latency_samples = -(-self.half // self.up)
        self.latency_s = self.latency_samples / self.fs_in
        self.reset()

    def reset(self) -> None:
        """Start a new stream (after a gap or device reset): the next sample is time 0 again."""
        self.n_channels = self._n_channels_fixed
        self._buf: np.ndarray | None = None
        self._first = 0          # input index of self._buf[0]
        self._n_in = 0           # input samples received
        self._k = 0              # next output index
        self._flushed = False
        self._nan_last: int | None = None   # input index of the last missing (NaN) sample seen

    @property
    def n_in(self) -> int:
        return self._n_in

    @property
    def n_out(self) -> int:
        return self._k

    def _pad(self) -> int:
        return self.half // self.up + self.H.shape[1] + 1

    def process(self, block: np.ndarray) -> np.ndarray:
        """(n, C) block at fs_in -> (k, C) new output samples at fs_out (k may be 0)."""
        if self._flushed:
            raise ConditioningError("stream already flushed; call reset() to start a new one")
        a = np.asarray(block, dtype=np.float64)
        if a.ndim != 2:
            raise ConditioningError(f"block must be (n, channels), got shape {a.shape}")
        if self.n_channels is None:
            self.n_channels = a.shape[1]
        elif a.shape[1] != self.n_channels:
            raise ConditioningError(f"block has {a.shape[1]} channels, stream has {self.n_channels}")
        finite = np.isfinite(a)
        if not finite.all():
            if not self.allow_nan or np.isinf(a).any():
                raise ConditioningError("block contains NaN or infinite samples")
            self._nan_last = self._n_in + int(np.nonzero(~finite.all(axis=1))[0][-1])
        if a.shape[0] == 0:
            return np.zeros((0, self.n_channels))
        if self._buf is None:
            pad = self._pad()
            self._buf = np.repeat(a[:1], pad, axis=0)
            self._first = -pad
        self._buf = np.concatenate([self._buf, a])
        self._n_in += a.shape[0]
        return self._emit(self._n_in)

    def _emit(self, avail: int) -> np.ndarray:
        # Output k needs inputs up to floor((k*down + half) / up) < avail.
        k1 = (avail * self.up - self.half - 1) // self.down + 1
        k1 = max(k1, self._k)
        y = _polyphase(self._buf, self._first, self._k, k1, self.up, self.down, self.half, self.H,
                       check_nan=self._nan_last is not None and self._nan_last >= self._first)
        self._k = k1
        # Keep only what the next output still needs.
        need = (self._k * self.down + self.half) // self.up - (self.H.shape[1] - 1)
        drop = max(0, need - self._first)
        if drop:
            self._buf = self._buf[drop:]
            self._first += drop
        return y

    def flush(self) -> np.ndarray:
        """End of stream: return the remaining outputs (total = ceil(n_in * up / down))."""
        if self._buf is None or self._flushed:
            self._flushed = True
            return np.zeros((0, self.n_channels or 0))
        pad = self._pad()
        self._buf = np.concatenate([self._buf, np.repeat(self._buf[-1:], pad, axis=0)])
        k_total = -(-self._n_in * self.up // self.down)
        y = _polyphase(self._buf, self._first, self._k, k_total, self.up, self.down, self.half, self.H,
                       check_nan=self._nan_last is not None and self._nan_last >= self._first)
        self._k = k_total
        self._flushed = True
        return y


@lru_cache(maxsize=32)
def conditioner_sos(fs: float, mains_hz: float | None = 50.0, highpass_hz: float | None = HIGHPASS_HZ,
                    lowpass_hz: float | None = None) -> np.ndarray:
    """Second-order sections: mains notch (if below Nyquist), Butterworth high-pass (order 2),
    optional Butterworth low-pass (order 2)."""
    if mains_hz not in (None, 50, 60, 50.0, 60.0):
        raise ConditioningError(f"mains_hz must be 50, 60 or None (no notch), got {mains_hz!r}; "
                                "set it to your country's mains frequency")
    parts = []
    if mains_hz is not None and mains_hz < 0.45 * fs:
        parts.append(dsp.notch_sos(float(mains_hz), NOTCH_Q, fs))
    if highpass_hz is not None:
        parts.append(dsp.butter_sos(2, float(highpass_hz), "highpass", fs))
    if lowpass_hz is not None and lowpass_hz < 0.45 * fs:
        parts.append(dsp.butter_sos(2, float(lowpass_hz), "lowpass", fs))
    if not parts:
        return np.array([[1.0, 0, 0, 1.0, 0, 0]])
    return np.vstack(parts)


class StreamingConditioner:
    """Causal mains notch + baseline removal (+ optional low-pass) with filter state across blocks.

    For display and signal-quality use at the device rate. Concatenated outputs equal
    `ecg_clean(x, fs, mains_hz, zero_phase=False)` on the whole signal (tested). The filter starts
    in its steady state for the first sample, so a DC offset does not produce a start-up step.
    Phase delay of the 0.5 Hz high-pass is small at QRS frequencies; use `ecg_clean(zero_phase=True)`
    offline when exact timing of slow waves matters.
    """

    def __init__(self, fs: float, mains_hz: float | None = 50.0, highpass_hz: float | None = HIGHPASS_HZ,
                 lowpass_hz: float | None = None):
        self.fs = float(fs)
        self.sos = conditioner_sos(self.fs, mains_hz, highpass_hz, lowpass_hz)
        self._zi0 = dsp.sosfilt_zi(self.sos)             # (sections, 2) for a unit step
        self.reset()

    def reset(self) -> None:
        self._zi: np.ndarray | None = None

    def process(self, block: np.ndarray) -> np.ndarray:
        a, one = _as_2d(block)
        if a.shape[0] == 0:
            return a[:, 0] if one else a
        if self._zi is None:
            self._zi = self._zi0[:, :, None] * a[0][None, None, :]
        elif self._zi.shape[2] != a.shape[1]:
            raise ConditioningError(f"block has {a.shape[1]} channels, stream has {self._zi.shape[2]}; "
                                    "call reset() to start a new stream")
        y, self._zi = dsp.sosfilt(self.sos, a, axis=0, zi=self._zi)
        return y[:, 0] if one else y


def ecg_clean(x: np.ndarray, fs: float, mains_hz: float | None = 50.0, highpass_hz: float | None = HIGHPASS_HZ,
              lowpass_hz: float | None = None, zero_phase: bool = False) -> np.ndarray:
    """Offline notch + baseline removal. zero_phase=False is exactly the streaming conditioner;
    zero_phase=True filters forward and backward (no phase shift, not streamable)."""
    a, one = _as_2d(x)
    sos = conditioner_sos(float(fs), mains_hz, highpass_hz, lowpass_hz)
    if zero_phase:
        y = dsp.sosfiltfilt(sos, a, axis=0)
    else:
        y = StreamingConditioner(fs, mains_hz, highpass_hz, lowpass_hz).process(a)
    return y[:, 0] if one else y
