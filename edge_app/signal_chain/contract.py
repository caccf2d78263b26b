"""The model-input contract: the one definition of what the model reads.

Training and the device both build the model's input with `make_model_input` and
`demographics_vector`, so they cannot drift apart. The model manifest records `CONTRACT`
so that a model trained against a different contract is refused at load time.

Why these choices:
- 100 Hz, 10 s, 12 leads in PTB-XL order: the data the model learns from (PTB-XL 100 Hz).
- Baseline removed per window with a zero-phase high-pass: a window is then the same function of
  its own samples on the device and in training (no dependence on how long the stream ran).
- Millivolts, clipped to +/-CLIP_MV: amplitude carries diagnostic information (HYP), so no
  per-record standardisation; the clip bounds the int8 input range (saturation is flagged by the
  quality gate, not hidden here).
- Demographics as value + "known" flag, so "unknown" is explicit rather than a fake age.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from firmware_bridge.leads import LEADS

from . import dsp

FS_HZ = 100
WINDOW_S = 10
N_SAMPLES = FS_HZ * WINDOW_S
CLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
HIGHPASS_HZ = 0.5
HIGHPASS_ORDER = 2
CLIP_MV = 10.0
AGE_CENTER = 60.0
AGE_SCALE = 20.0
AGE_MAX = 90.0            # PTB-XL codes every age over 89 as 300
DEMOGRAPHICS: tuple[str, ...] = ("age_scaled", "age_known", "sex_female", "sex_known")

CONTRACT = {
    "name": "ecg12-100hz-10s-mv-hp0.5",
    "version": 1,
    "fs_hz": FS_HZ,
    "n_samples": N_SAMPLES,
    "leads": list(LEADS),
    "units": "mV",
    "baseline": f"butterworth highpass {HIGHPASS_HZ} Hz order {HIGHPASS_ORDER}, zero-phase (sosfiltfilt), per window",
    "clip_mv": CLIP_MV,
    "ecg_input": {"name": "ecg", "shape": [1, N_SAMPLES, 12], "dtype": "float32"},
    "demographics_input": {"name": "demographics", "shape": [1, 4], "dtype": "float32",
                           "fields": list(DEMOGRAPHICS),
                           "age": f"(min(age, {AGE_MAX}) - {AGE_CENTER}) / {AGE_SCALE}; 0 when unknown",
                           "sex": "1 female, 0 male; 0 when unknown"},
    "classes": list(CLASSES),
}


class ContractError(ValueError):
    """Input that cannot be turned into a model input (wrong shape, rate, non-finite values)."""


@lru_cache(maxsize=None)
def _highpass_sos(fs: float) -> np.ndarray:
    return dsp.butter_sos(HIGHPASS_ORDER, HIGHPASS_HZ, "highpass", fs)


def remove_baseline(x: np.ndarray, fs: float = FS_HZ) -> np.ndarray:
    """Zero-phase baseline-wander removal along axis 0 (time)."""
    return dsp.sosfiltfilt(_highpass_sos(float(fs)), x, axis=0)


def make_model_input(window_uv: np.ndarray) -> np.ndarray:
    """(1000, 12) microvolts at 100 Hz, LEADS order -> (1000, 12) float32 model input.

    Accepts a batch (b, 1000, 12) too. The window must already be at 100 Hz (the device's
    streaming resampler or PTB-XL's own 100 Hz files provide that).
    """
    x = np.asarray(window_uv, dtype=np.float64)
    if x.shape[-2:] != (N_SAMPLES, len(LEADS)):
        raise ContractError(f"model input needs shape (..., {N_SAMPLES}, {len(LEADS)}) at {FS_HZ} Hz, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ContractError("model input contains NaN or infinite samples")
    y = remove_baseline(x, FS_HZ) if x.ndim == 2 else remove_baseline(np.moveaxis(x, -2, 0), FS_HZ)
    if x.ndim != 2:
        y = np.moveaxis(y, 0, -2)
    y = np.clip(y / 1000.0, -CLIP_MV, CLIP_MV)
    return y.astype(np.float32)


def demographics_vector(age: float | None, sex: str | int | None) -> np.ndarray:
    """Age in years (PTB-XL's 300 means > 89) or None; sex 'male'/'female'/0/1 or None -> (4,) float32."""
    v = np.zeros(4, dtype=np.float32)
    if age is not None and not (isinstance(age, float) and np.isnan(age)):
        a = float(age)
        if a < 0:
            raise ContractError(f"age must be >= 0 years, got {age}")
        v[0] = (min(a, AGE_MAX) - AGE_CENTER) / AGE_SCALE
        v[1] = 1.0
    if sex is not None and not (isinstance(sex, float) and np.isnan(sex)):
        if isinstance(sex, str):
            s = sex.strip().lower()
            if s in ("female", "f"):
                v[2] = 1.0
            elif s in ("male", "m"):
                v[2] = 0.0
            else:
                raise ContractError(f"sex must be 'male', 'female' or unknown (None), got {sex!r}")
        else:
            if int(sex) not in (0, 1):
                raise ContractError(f"sex code must be 0 (male) or 1 (female), got {sex}")
            v[2] = float(int(sex))
        v[3] = 1.0
    return v
