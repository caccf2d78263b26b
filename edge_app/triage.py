"""Turn a window's probabilities, heart rate and quality into a triage level and alarms.

In the spirit of IEC 60601-1-8 (alarm systems):
- suspected MI (MI probability above its threshold)           -> level "high",   HIGH priority alarm
- other abnormal finding (STTC, CD, HYP above threshold) or an
  extreme heart rate (below/above configured limits)          -> level "medium", MEDIUM priority alarm
- nothing above threshold                                     -> level "none",   no alarm
- quality gate says unusable                                  -> "cannot_interpret" and a TECHNICAL alarm;
  the model is not run and no clinical finding is made (never a guess on an unreadable signal).

Thresholds come from the model manifest (chosen on the validation fold by the model's trainer) and
may be overridden per class in config ([model.thresholds]).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edge_app.results import Alarm, new_id, utc_now_iso
from edge_app.signal_chain.contract import CLASSES

ABNORMAL = ("STTC", "CD", "HYP")
CLASS_TEXT = {"MI": "suspected myocardial infarction", "STTC": "ST/T change", "CD": "conduction disturbance",
              "HYP": "hypertrophy", "NORM": "normal ECG"}


@dataclass
class TriageDecision:
    level: str                      # 'high' | 'medium' | 'none' | 'cannot_interpret'
    priority: str                   # 'high' | 'medium' | 'low' | 'none'
    positive: list[str] = field(default_factory=list)   # classes above threshold (MI, STTC, CD, HYP)
    alarms: list[Alarm] = field(default_factory=list)


def merge_thresholds(manifest_thresholds: dict[str, float], overrides: dict[str, float]) -> dict[str, float]:
    t = {c: 0.5 for c in CLASSES}
    t.update({k: float(v) for k, v in (manifest_thresholds or {}).items()})
    t.update({k: float(v) for k, v in (overrides or {}).items()})
    return t


def decide(probabilities: dict[str, float] | None, thresholds: dict[str, float], quality_verdict: str,
           quality_reasons: list[str], heart_rate_bpm: float | None, hr_low_bpm: float, hr_high_bpm: float,
           device_id: str, result_id: str) -> TriageDecision:
    now = utc_now_iso()

    def alarm(kind: str, priority: str, code: str, message: str) -> Alarm:
        return Alarm(id=new_id(), kind=kind, priority=priority, code=code, message=message, time=now,
                     device_id=device_id, result_id=result_id)

    if quality_verdict == "unusable" or probabilities is None:
        why = "; ".join(quality_reasons) if quality_reasons else "signal unusable"
        return TriageDecision("cannot_interpret", "medium", [],
                              [alarm("technical", "medium", "signal_unusable",
                                     f"Cannot interpret: {why}. Check electrodes and cable.")])
    positive = [c for c in ("MI",) + ABNORMAL if probabilities.get(c, 0.0) >= thresholds[c]]
    alarms: list[Alarm] = []
    level, priority = "none", "none"
    if "MI" in positive:
        level, priority = "high", "high"
        alarms.append(alarm("physiological", "high", "suspected_mi",
                            f"Suspected MI (p={probabilities['MI']:.2f}). Triage aid, not a diagnosis: "
                            "confirm with a clinician / 12-lead review."))
    others = [c for c in positive if c != "MI"]
    if others:
        if level == "none":
            level, priority = "medium", "medium"
        alarms.append(alarm("physiological", "medium", "abnormal_ecg",
                            "Abnormal ECG: " + ", ".join(f"{CLASS_TEXT[c]} (p={probabilities[c]:.2f})"
                                                         for c in others)))
    if heart_rate_bpm is not None and (heart_rate_bpm < hr_low_bpm or heart_rate_bpm > hr_high_bpm):
        if level == "none":
            level, priority = "medium", "medium"
        kind = "bradycardia" if heart_rate_bpm < hr_low_bpm else "tachycardia"
        alarms.append(alarm("physiological", "medium", "extreme_heart_rate",
                            f"Extreme heart rate {heart_rate_bpm:.0f} bpm ({kind}; limits "
                            f"{hr_low_bpm:.0f}-{hr_high_bpm:.0f})"))
    return TriageDecision(level, priority, positive, alarms)
