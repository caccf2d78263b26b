"""Class activation maps with numpy only, from the exported feature map and the model's linear head.

The model ends in GlobalAveragePooling -> concat(demographic embedding) -> one Dense -> sigmoid, so
    logit_c = mean_t CAM_c(t) + demo_term_c + b_c,   CAM_c(t) = sum_k W[k, c] * A[t, k]
This is Grad-CAM without gradients (for a GAP + linear head the gradient weights ARE W / T), exact up to
int8 rounding of the feature map. The identity is checked in tests and usable as a runtime sanity check.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GradCamHead:
    W: np.ndarray            # (C, n_classes) head weights on the pooled feature map
    W_demo: np.ndarray       # (D, n_classes) head weights on the demographic embedding
    b: np.ndarray            # (n_classes,)
    demo_W: np.ndarray       # (4, D) demographic embedding Dense
    demo_b: np.ndarray       # (D,)
    seconds_per_step: float  # time between feature-map steps
    fs_hz: float             # input rate the map is upsampled to

    @classmethod
    def load(cls, path: str | Path) -> "GradCamHead":
        with np.load(path) as z:
            return cls(W=z["W"].astype(np.float64), W_demo=z["W_demo"].astype(np.float64), b=z["b"].astype(np.float64),
                       demo_W=z["demo_W"].astype(np.float64), demo_b=z["demo_b"].astype(np.float64),
                       seconds_per_step=float(z["seconds_per_step"]), fs_hz=float(z["fs_hz"]))


def class_activation_map(feature_map: np.ndarray, W: np.ndarray) -> np.ndarray:
    """feature_map (T', C) (or (1, T', C)) -> CAM (n_classes, T') in logit units per step."""
    A = np.asarray(feature_map, dtype=np.float64)
    if A.ndim == 3:
        A = A[0]
    return (A @ W).T


def demographic_term(demographics: np.ndarray, head: GradCamHead) -> np.ndarray:
    """Contribution of the demographic embedding to each logit (constant over time)."""
    d = np.asarray(demographics, dtype=np.float64).reshape(-1)
    e = np.maximum(d @ head.demo_W + head.demo_b, 0.0)
    return e @ head.W_demo


def logits_from_cam(cam: np.ndarray, demographics: np.ndarray, head: GradCamHead) -> np.ndarray:
    """The logit identity: mean over time of the CAM + demographic term + bias."""
    return cam.mean(axis=1) + demographic_term(demographics, head) + head.b


def upsample(cam: np.ndarray, n_samples: int, head: GradCamHead) -> np.ndarray:
    """CAM (n_classes, T') -> (n_classes, n_samples) at the input rate, step k centred at (k+0.5)*step."""
    T = cam.shape[1]
    centres = (np.arange(T) + 0.5) * head.seconds_per_step
    t = np.arange(n_samples) / head.fs_hz
    return np.stack([np.interp(t, centres, c) for c in cam])


def normalise(cam_row: np.ndarray) -> np.ndarray:
    """Scale one class's map to [0, 1] over its positive part (what a display shows)."""
    pos = np.maximum(cam_row - np.median(cam_row), 0.0)
    m = pos.max()
    return pos / m if m > 0 else pos
