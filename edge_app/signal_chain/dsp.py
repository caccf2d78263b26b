"""The few scipy.signal operations the device's signal chain uses, without importing scipy.signal.

Why this module exists (issue 17, a lean device): `import scipy.signal` costs ~80 MB of resident memory
and ~0.6 s (its package `__init__` pulls in scipy.linalg, scipy.fft, scipy.special, scipy.optimize,
scipy.interpolate, ...), more than everything else the daemon holds. The chain only needs:
- second-order-section IIR filtering, causal (`sosfilt`) and zero-phase (`sosfiltfilt`), and the
  zero-phase transfer-function form (`filtfilt`) the quality gate's mains notch uses;
- local maxima at a minimum distance (`find_peaks(x, distance=...)`);
- the filter designs (Butterworth, IIR notch, the resampler's Kaiser FIR) for a handful of rates.

How, keeping the outputs bit-identical to scipy.signal (tested: tests/test_signal_dsp.py):
- Filtering runs scipy's *own compiled kernels* (`scipy/signal/_sosfilt*.so`, `_sigtools*.so`,
  `_peak_finding_utils*.so`), loaded straight from scipy's package directory without executing
  `scipy/signal/__init__.py` (1.5 MB instead of ~80 MB). The Python around them (padding, initial
  conditions, axis handling) repeats scipy's wrappers operation for operation. If the kernels cannot
  be loaded this way (a scipy that moved them), `scipy.signal` is imported instead: same results, more
  memory; `kernels().path` says which ("direct" or "scipy.signal"; tests require "direct").
- Designs are tabulated once (`edge_app/data/dsp_designs.json`, written by
  `python -m edge_app.signal_chain.dsp_table` with scipy.signal and checked against it entry by entry in the
  tests). A design not in the table (an unusual rate) is computed with scipy.signal on first use and
  cached: correct everywhere, light on the rates the device and PTB-XL use.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DESIGNS_PATH = Path(__file__).resolve().parents[1] / "data" / "dsp_designs.json"
#: Rates whose designs are tabulated: the front ends (250/500/1000 Hz), PTB-XL (100/500), MIT-BIH (360),
#: and a few common Holter rates.
TABLE_RATES: tuple[float, ...] = (100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 360.0, 500.0, 1000.0)


# ------------------------------------------------------------------------------------------- kernels
def _load_kernel(name: str) -> Any | None:
    """scipy/signal/<name>*.so as a module, without running scipy.signal's package __init__."""
    try:
        spec0 = importlib.util.find_spec("scipy")
        if spec0 is None or not spec0.submodule_search_locations:
            return None
        sdir = Path(list(spec0.submodule_search_locations)[0]) / "signal"
        full = f"scipy.signal.{name}"
        if full in sys.modules:
            return sys.modules[full]
        cands = sorted(p for p in sdir.glob(f"{name}.*") if p.suffix in (".so", ".pyd"))
        if not cands:
            return None
        spec = importlib.util.spec_from_file_location(full, cands[0])
        if spec is None or spec.loader is None:
            return None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    except Exception as e:  # noqa: BLE001 - any failure means: use the ordinary import
        log.debug("dsp: cannot load scipy kernel %s directly (%s); using scipy.signal", name, e)
        return None


class _Kernels:
    def __init__(self) -> None:
        so = _load_kernel("_sosfilt")
        st = _load_kernel("_sigtools")
        pf = _load_kernel("_peak_finding_utils")
        if so is not None and st is not None and pf is not None and hasattr(so, "_sosfilt") and \
                hasattr(st, "_linear_filter") and hasattr(pf, "_local_maxima_1d"):
            self.path = "direct"
        else:                                  # same kernels through the public package (heavier)
            from scipy.signal import _peak_finding_utils as pf
            from scipy.signal import _sigtools as st
            from scipy.signal import _sosfilt as so
            self.path = "scipy.signal"
        self.sosfilt = so._sosfilt
        self.linear_filter = st._linear_filter
        self.local_maxima_1d = pf._local_maxima_1d
        self.select_by_peak_distance = pf._select_by_peak_distance


_K: _Kernels | None = None


def kernels() -> _Kernels:
    global _K
    if _K is None:
        _K = _Kernels()
    return _K


# ------------------------------------------------------------------------------------------- filters
def _companion_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """scipy.signal.lfilter_zi, same operations (steady state of the step response)."""
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    while a.shape[0] > 1 and a[0] == 0.0:
        a = a[1:]
    if a[0] != 1.0:
        b = b / a[0]
        a = a / a[0]
    n = max(a.shape[0], b.shape[0])
    if a.shape[0] < n:
        a = np.concatenate((a, np.zeros(n - a.shape[0])))
    elif b.shape[0] < n:
        b = np.concatenate((b, np.zeros(n - b.shape[0])))
    comp = np.zeros((n - 1, n - 1), dtype=np.result_type(a))        # scipy.linalg.companion(a)
    comp[0] = -a[1:] / (1.0 * a[0])
    comp[list(range(1, n - 1)), list(range(0, n - 2))] = 1
    iminus = np.eye(n - 1) - comp.T
    return np.linalg.solve(iminus, b[1:] - a[1:] * b[0])


@lru_cache(maxsize=64)
def _sosfilt_zi_cached(key: bytes, n_sections: int) -> np.ndarray:
    sos = np.frombuffer(key, dtype=np.float64).reshape(n_sections, 6)
    zi = np.empty((n_sections, 2))
    scale = 1.0
    for s in range(n_sections):
        b, a = sos[s, :3], sos[s, 3:]
        zi[s, ...] = scale * _companion_zi(b, a)
        scale *= np.sum(b) / np.sum(a)
    return zi


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """scipy.signal.sosfilt_zi (cached per filter)."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    return _sosfilt_zi_cached(sos.tobytes(), sos.shape[0]).copy()


def sosfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1, zi: np.ndarray | None = None) -> Any:
    """scipy.signal.sosfilt for float64 input (same kernel, same result); returns y, or (y, zf) with zi."""
    sos = np.asarray(sos, dtype=np.float64)
    x = np.asarray(x)
    n_sections = sos.shape[0]
    dtype = np.result_type(sos, x, *([np.asarray(zi)] if zi is not None else []))
    if dtype != np.float64:
        raise ValueError(f"dsp.sosfilt handles float64 only, got {dtype}")
    zshape = list(x.shape)
    zshape[axis] = 2
    zshape = [n_sections] + zshape
    ret_zi = zi is not None
    zi = np.array(zi, dtype=dtype) if ret_zi else np.zeros(zshape, dtype=dtype)
    if tuple(zi.shape) != tuple(zshape):
        raise ValueError(f"zi must have shape {tuple(zshape)}, got {zi.shape}")
    axis = axis % x.ndim
    xm = np.moveaxis(x, axis, -1)
    zm = np.moveaxis(zi, (0, axis + 1), (-2, -1))
    x_shape, zi_shape = xm.shape, zm.shape
    xm = np.array(np.reshape(xm, (-1, xm.shape[-1])), dtype, order="C")
    zm = np.ascontiguousarray(np.reshape(zm, (-1, n_sections, 2)))
    kernels().sosfilt(sos, xm, zm)
    y = np.moveaxis(xm.reshape(x_shape), -1, axis)
    if ret_zi:
        return y, np.moveaxis(zm.reshape(zi_shape), (-2, -1), (0, axis + 1))
    return y


def _axis_slice(a: np.ndarray, start: int | None = None, stop: int | None = None, step: int | None = None,
                axis: int = -1) -> np.ndarray:
    s = [slice(None)] * a.ndim
    s[axis] = slice(start, stop, step)
    return a[tuple(s)]


def odd_ext(x: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """scipy.signal._arraytools.odd_ext."""
    if n < 1:
        return x
    if n > x.shape[axis] - 1:
        raise ValueError(f"The extension length n ({n}) is too big. It must not exceed x.shape[axis]-1, "
                         f"which is {x.shape[axis] - 1}.")
    left_end = _axis_slice(x, 0, 1, axis=axis)
    left_ext = _axis_slice(x, n, 0, -1, axis=axis)
    right_end = _axis_slice(x, -1, axis=axis)
    right_ext = _axis_slice(x, -2, -(n + 2), -1, axis=axis)
    return np.concatenate((2 * left_end - left_ext, x, 2 * right_end - right_ext), axis=axis)


def sosfiltfilt(sos: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """scipy.signal.sosfiltfilt with its defaults (odd padding of 3 * ntaps)."""
    sos = np.asarray(sos, dtype=np.float64)
    x = np.asarray(x)
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1
    ntaps -= min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
    edge = ntaps * 3
    if x.shape[axis] <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    ext = odd_ext(x, edge, axis=axis)
    zi = sosfilt_zi(sos)
    zs = [1] * x.ndim
    zs[axis] = 2
    zi = zi.reshape([n_sections] + zs)
    x0 = _axis_slice(ext, stop=1, axis=axis)
    y, _ = sosfilt(sos, ext, axis=axis, zi=zi * x0)
    y0 = _axis_slice(y, start=-1, axis=axis)
    y, _ = sosfilt(sos, _axis_slice(y, step=-1, axis=axis), axis=axis, zi=zi * y0)
    y = _axis_slice(y, step=-1, axis=axis)
    return _axis_slice(y, edge, -edge, axis=axis)


def filtfilt(b: np.ndarray, a: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """scipy.signal.filtfilt with its defaults (method 'pad', odd padding of 3 * max(len(a), len(b)))."""
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    x = np.asarray(x)
    if len(a) < 2:
        raise ValueError("dsp.filtfilt needs an IIR denominator (len(a) >= 2)")
    edge = 3 * max(len(a), len(b))
    if x.shape[axis] <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    ext = odd_ext(x, edge, axis=axis)
    zi = _companion_zi(b, a)
    zs = [1] * x.ndim
    zs[axis] = zi.size
    zi = np.reshape(zi, zs)
    lin = kernels().linear_filter
    x0 = _axis_slice(ext, stop=1, axis=axis)
    y, _ = lin(b, a, ext, axis, zi * x0)
    y0 = _axis_slice(y, start=-1, axis=axis)
    y, _ = lin(b, a, _axis_slice(y, step=-1, axis=axis), axis, zi * y0)
    y = _axis_slice(y, step=-1, axis=axis)
    return _axis_slice(y, edge, -edge, axis=axis)


def find_peaks(x: np.ndarray, distance: float | None = None) -> np.ndarray:
    """scipy.signal.find_peaks(x, distance=...)[0]: local maxima (plateaus by their middle), then the
    highest first within `distance` samples."""
    x = np.asarray(x, order="C", dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("`x` must be a 1-D array")
    if distance is not None and distance < 1:
        raise ValueError("`distance` must be greater or equal to 1")
    k = kernels()
    peaks, _, _ = k.local_maxima_1d(x)
    if distance is not None:
        keep = k.select_by_peak_distance(peaks, x[peaks], distance)
        peaks = peaks[keep]
    return peaks


def hann_periodic(m: int) -> np.ndarray:
    """scipy.signal.get_window('hann', m) (periodic), computed as scipy's general_cosine does."""
    fac = np.linspace(-np.pi, np.pi, m + 1)
    w = np.zeros(m + 1)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    return w[:-1]


@lru_cache(maxsize=16)
def _density_window(nperseg: int, fs: float) -> np.ndarray:
    win = hann_periodic(nperseg)
    return win * (1 / np.sqrt(sum(win ** 2 + 0.0 ** 2) / (1 / fs)))     # ShortTimeFFT.fac_psd, same ops


def welch_density(x: np.ndarray, fs: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.welch(x, fs, nperseg=nperseg, axis=0, detrend=False) of (n, C), bit for bit: periodic
    Hann window scaled for density as ShortTimeFFT does, 50 % overlap, one-sided, mean over segments."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    nperseg = int(min(nperseg, n))
    hop = nperseg - nperseg // 2
    win = _density_window(nperseg, float(fs))
    nseg = max(1, (n - nperseg // 2) // hop)
    segs = np.lib.stride_tricks.sliding_window_view(np.moveaxis(x, 0, -1), nperseg, axis=-1)[..., 0::hop, :]
    spec = np.fft.rfft(segs[..., :nseg, :] * win, axis=-1)                 # (C, S, F)
    p = np.ascontiguousarray(np.moveaxis(spec.real ** 2 + spec.imag ** 2, -2, -1))   # (C, F, S) as scipy
    p[..., 1:-1 if nperseg % 2 == 0 else None, :] *= 2
    f = np.fft.rfftfreq(nperseg, 1 / fs)
    return f, p.mean(axis=-1).T


# ------------------------------------------------------------------------------------------- designs
def _key(kind: str, *args: Any) -> str:
    return kind + "|" + "|".join(repr(float(a)) if isinstance(a, (int, float, np.floating)) else str(a)
                                 for a in args)


@lru_cache(maxsize=1)
def _table() -> dict[str, list]:
    try:
        return json.loads(DESIGNS_PATH.read_text())["designs"]
    except (OSError, ValueError, KeyError) as e:
        log.warning("dsp: design table %s unreadable (%s); designs will use scipy.signal", DESIGNS_PATH, e)
        return {}


_computed: dict[str, np.ndarray] = {}


def _design(key: str, compute: Any) -> np.ndarray:
    t = _table()
    if key in t:
        return np.array(t[key], dtype=np.float64)
    if key not in _computed:
        log.info("dsp: design %s not tabulated; computing it with scipy.signal", key)
        _computed[key] = np.asarray(compute(), dtype=np.float64)
    return _computed[key].copy()


def butter_sos(order: int, wn: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    """scipy.signal.butter(order, wn, btype=btype, fs=fs, output='sos')."""
    wn_t = tuple(float(w) for w in wn) if isinstance(wn, (tuple, list)) else (float(wn),)

    def compute() -> np.ndarray:
        from scipy import signal as sps
        return sps.butter(int(order), list(wn_t) if len(wn_t) > 1 else wn_t[0], btype=btype, fs=float(fs),
                          output="sos")
    return _design(_key("butter", int(order), btype, float(fs), *wn_t), compute)


def iirnotch_ba(f0: float, q: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.iirnotch(f0, q, fs=fs) -> (b, a)."""
    def compute() -> np.ndarray:
        from scipy import signal as sps
        return np.vstack(sps.iirnotch(float(f0), float(q), fs=float(fs)))
    ba = _design(_key("iirnotch", float(f0), float(q), float(fs)), compute)
    return ba[0], ba[1]


def notch_sos(f0: float, q: float, fs: float) -> np.ndarray:
    """scipy.signal.tf2sos(*scipy.signal.iirnotch(f0, q, fs=fs))."""
    def compute() -> np.ndarray:
        from scipy import signal as sps
        return sps.tf2sos(*sps.iirnotch(float(f0), float(q), fs=float(fs)))
    return _design(_key("notch_sos", float(f0), float(q), float(fs)), compute)


def kaiser_lowpass(stop_db: float, pass_hz: float, stop_hz: float, fs_up: float, up: int) -> np.ndarray:
    """The resampler's FIR: kaiserord(stop_db, width) -> numtaps|1, firwin(... kaiser beta, fs) * up."""
    def compute() -> np.ndarray:
        from scipy import signal as sps
        numtaps, beta = sps.kaiserord(stop_db, (stop_hz - pass_hz) / (0.5 * fs_up))
        numtaps |= 1
        return sps.firwin(numtaps, 0.5 * (pass_hz + stop_hz), window=("kaiser", beta), fs=fs_up) * up
    return _design(_key("kaiser_lowpass", stop_db, pass_hz, stop_hz, fs_up, int(up)), compute)
