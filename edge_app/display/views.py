"""What the page is shown of a result (list entry, detail strip) and of the patient context (pure functions).

Why separate: the hub (hub.py) keeps state and its lock; these only shape data, so a reader of the page's
JSON API finds here which fields a results list carries (no CAM arrays: those come with the result detail).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_app.patient import SEXES
from firmware_bridge.leads import LEADS

from .live_strip import rows_to_json

DETAIL_MAX_FS = 250.0        # result-detail strips are decimated to at most this rate for the page
SUMMARY_KEYS = ("id", "time", "record", "window", "triage_level", "alarm_priority", "triage", "priority", "level",
                "label", "probabilities", "heart_rate_bpm", "heart_rate", "patient", "quality", "model",
                "model_version", "alarms", "alarm", "gap_before", "notice", "rhythm")


def result_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The fields a results list needs (no CAM arrays)."""
    summary = {key: result[key] for key in SUMMARY_KEYS if key in result}
    explanation = result.get("explanation")
    if isinstance(explanation, dict):
        shown = {key: explanation[key] for key in ("class", "leads", "seconds", "summary") if key in explanation}
        if isinstance(explanation.get("findings"), list):   # findings without any CAM arrays
            shown["findings"] = [{key: value for key, value in finding.items() if key != "cam"}
                                 for finding in explanation["findings"] if isinstance(finding, dict)]
        summary["explanation"] = shown
    return summary


def patient_view(patient: Any) -> dict[str, Any]:
    """{"age", "sex"} with the daemon's "unknown" strings (PatientContext.to_dict) mapped to None."""
    if hasattr(patient, "to_dict") and not isinstance(patient, dict):
        patient = patient.to_dict()
    if not isinstance(patient, dict):
        patient = {}
    age, sex = patient.get("age"), patient.get("sex")
    age = float(age) if isinstance(age, (int, float)) and not isinstance(age, bool) and math.isfinite(age) else None
    return {"age": age, "sex": sex if sex in SEXES else None}


def display_strip(fs: float, strip_uv: np.ndarray) -> np.ndarray:
    """A stored raw strip as the model sees it: the contract's zero-phase 0.5 Hz baseline removal
    (electrode DC offsets would otherwise push traces off the paper). Non-finite rows stay NaN."""
    from edge_app.signal_chain.contract import remove_baseline
    x = np.asarray(strip_uv, dtype=np.float64)
    if x.shape[0] < 16:
        return x
    bad = ~np.isfinite(x)
    y = remove_baseline(np.where(bad, 0.0, x), fs)
    y[bad] = np.nan
    return y


def strip_payload(fs: float, strip_uv: np.ndarray, max_fs: float = DETAIL_MAX_FS) -> dict[str, Any]:
    """A strip for JSON: baseline removed, boxcar-decimated to <= max_fs, microvolts as ints, LEADS order rows."""
    x = display_strip(fs, strip_uv)
    factor = max(1, int(math.ceil(fs / max_fs)))
    k = x.shape[0] // factor
    if factor > 1 and k:
        x = x[:k * factor].reshape(k, factor, x.shape[1]).mean(axis=1)
    return {"fs": fs / factor, "fs_raw": fs, "n_raw": int(strip_uv.shape[0]), "leads": list(LEADS),
            "units": "uV", "filter": "zero-phase 0.5 Hz high-pass (model contract)",
            "data": rows_to_json(x.astype(np.float32))}
