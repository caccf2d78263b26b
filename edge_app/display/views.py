"""What the page is shown of a result list entry and of the patient context (pure functions of dicts).

Why separate: the hub (hub.py) keeps state and its lock; these only shape data, so a reader of the page's
JSON API finds here which fields a results list carries (no CAM arrays: those come with the result detail).
"""
from __future__ import annotations

import math
from typing import Any

from edge_app.patient import SEXES

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
