"""Evaluate a .tflite through the device runtime (edge_app.inference LiteRT backend), never TensorFlow."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_app.inference.backend import create_backend
from edge_app.inference import litert as _litert  # noqa: F401  (registers the backend)
from edge_app.signal_chain.contract import CLASSES
from training.metrics import binary_stats, roc_auc


def find_manifest(model_path: Path) -> tuple[dict | None, Path | None]:
    """The manifest next to the model: one whose model_file names this file, else manifest.json in the dir."""
    d = model_path.parent
    cands = sorted(d.glob("*manifest*.json"))
    for c in cands:
        try:
            m = json.loads(c.read_text())
        except Exception:
            continue
        if m.get("model_file") == model_path.name:
            return m, c
    if (d / "manifest.json").exists():
        return json.loads((d / "manifest.json").read_text()), d / "manifest.json"
    return None, None


def run_tflite(model_path: Path, ecg: np.ndarray, demo: np.ndarray, num_threads: int = 1,
               want_feature_map: bool = False):
    be = create_backend("litert")
    be.load(str(model_path), num_threads=num_threads)
    P = np.empty((len(ecg), len(CLASSES)), dtype=np.float32)
    F = None
    for k in range(len(ecg)):
        out = be.run(ecg[k:k + 1], demo[k:k + 1])
        P[k] = out["probabilities"].reshape(-1)
        if want_feature_map:
            if F is None:
                F = np.empty((len(ecg),) + out["feature_map"].shape[1:], dtype=np.float32)
            F[k] = out["feature_map"][0]
    return (P, F) if want_feature_map else P


def summarize(Y: np.ndarray, P: np.ndarray, thresholds: dict[str, float] | None) -> dict:
    per = {}
    for k, c in enumerate(CLASSES):
        d = {"auc": roc_auc(Y[:, k], P[:, k]), "n_positive": int(Y[:, k].sum())}
        if thresholds is not None:
            s = binary_stats(Y[:, k], P[:, k], thresholds[c])
            d.update({"threshold": thresholds[c], "sensitivity": s["sensitivity"], "specificity": s["specificity"],
                      "ppv": s["ppv"], "f1": s["f1"]})
        per[c] = d
    return {"macro_auc": float(np.nanmean([per[c]["auc"] for c in CLASSES])), "n": int(len(Y)), "per_class": per}
