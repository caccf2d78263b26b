"""The messages the daemon produces: one TriageResult per analysed 10 s window, and alarms.

Why dataclasses with an explicit schema version: results leave the device (MQTT, bedside page,
stored JSON read years later), so their shape is a contract. `SCHEMA_VERSION` changes whenever a
field is renamed or removed; adding fields is backwards compatible.
Every result says "Triage aid, not a diagnosis" in its own `notice` field, so no consumer can show a
result without it.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge_app import __version__ as SOFTWARE_VERSION

SCHEMA_VERSION = "ecg-edge.result/1"
NOTICE = "Triage aid, not a diagnosis"

#: Triage levels, most to least urgent. "cannot_interpret" is never a clinical finding.
LEVELS = ("high", "medium", "none", "cannot_interpret")
#: IEC 60601-1-8 alarm priorities.
PRIORITIES = ("high", "medium", "low", "none")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class WindowSpan:
    """Where in the stream a window lies: sample indices at the native rate, and seconds."""
    start_index: int          # first native sample (inclusive), stream index
    end_index: int            # last native sample + 1
    fs: float
    start_s: float            # start_index / fs
    end_s: float
    device_time_us: int | None = None   # the front end's clock (us) at the first sample; None if unknown


@dataclass
class QualitySummary:
    verdict: str                              # 'good' | 'acceptable' | 'unusable'
    reasons: list[str] = field(default_factory=list)
    electrodes_off: list[str] = field(default_factory=list)
    per_lead: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """One class above its threshold, and what drove it (Grad-CAM over time + lead importance)."""
    cls: str
    probability: float
    threshold: float
    leads: list[str] = field(default_factory=list)          # most important leads first
    seconds: list[list[float]] = field(default_factory=list)  # [[start_s, end_s], ...] within the window
    text: str = ""
    cam: list[float] = field(default_factory=list)  # the class's Grad-CAM over the window, ~50 points, 0..1


@dataclass
class Explanation:
    findings: list[Finding] = field(default_factory=list)
    summary: str = ""
    method: str = "grad-cam over time + per-lead occlusion importance"


@dataclass
class Alarm:
    """An alarm condition in the spirit of IEC 60601-1-8: physiological or technical, with a priority."""
    id: str
    kind: str                 # 'physiological' | 'technical'
    priority: str             # 'high' | 'medium' | 'low'
    code: str                 # e.g. 'suspected_mi', 'abnormal_ecg', 'extreme_heart_rate', 'signal_unusable'
    message: str
    time: str
    device_id: str
    result_id: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    notice: str = NOTICE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = "ecg-edge.alarm/1"
        return d


@dataclass
class PatientContext:
    age: float | None = None
    sex: str | None = None     # 'male' | 'female' | None (unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"age": "unknown" if self.age is None else self.age,
                "sex": "unknown" if self.sex is None else self.sex}


@dataclass
class ModelInfo:
    version: str
    sha256: str
    backend: str = ""


@dataclass
class TriageResult:
    id: str
    device_id: str
    time: str
    record: str | None                   # source record (replay) or None (live stream)
    window: WindowSpan
    quality: QualitySummary
    probabilities: dict[str, float] | None   # None when the window was not interpretable
    triage_level: str                     # one of LEVELS
    alarm_priority: str                   # one of PRIORITIES
    explanation: Explanation
    heart_rate_bpm: float | None
    patient: PatientContext
    model: ModelInfo
    alarms: list[Alarm] = field(default_factory=list)
    gap_before: bool = False              # a gap in the stream preceded this window (reported)
    run_id: str = ""                      # uuid4 of the daemon process that produced it ("" outside a daemon)
    timings_ms: dict[str, float] = field(default_factory=dict)
    software_version: str = SOFTWARE_VERSION
    notice: str = NOTICE
    schema: str = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alarms"] = [a.to_dict() for a in self.alarms]
        d["patient"] = self.patient.to_dict()
        d["triage"] = {"level": self.triage_level, "alarm_priority": self.alarm_priority}
        return d

    def replay_dict(self) -> dict[str, Any]:
        """The compact `ecg-edge replay` line (contract fields first)."""
        return {
            "record": self.record,
            "window_start_s": round(self.window.start_s, 3),
            "window_end_s": round(self.window.end_s, 3),
            "quality": self.quality.verdict,
            "quality_reasons": self.quality.reasons,
            "probabilities": self.probabilities,
            "triage": self.triage_level,
            "alarm_priority": self.alarm_priority,
            "findings": [{"class": f.cls, "probability": f.probability, "leads": f.leads, "seconds": f.seconds}
                         for f in self.explanation.findings],
            "heart_rate_bpm": self.heart_rate_bpm,
            "patient": self.patient.to_dict(),
            "model_version": self.model.version,
            "model_sha256": self.model.sha256,
            "software_version": self.software_version,
            "notice": self.notice,
        }


#: Required top-level keys of a stored/published result (used by tests and consumers to check shape).
RESULT_KEYS = ("schema", "id", "device_id", "time", "window", "quality", "probabilities", "triage_level",
               "alarm_priority", "triage", "explanation", "heart_rate_bpm", "patient", "model", "alarms",
               "software_version", "notice")


def validate_result_dict(result: dict[str, Any]) -> list[str]:
    """Problems with a result dict's shape ([] = fine). Cheap structural check, not a JSON-Schema engine."""
    problems = [f"missing key {k}" for k in RESULT_KEYS if k not in result]
    if problems:
        return problems
    if result["schema"] != SCHEMA_VERSION:
        problems.append(f"schema {result['schema']!r} != {SCHEMA_VERSION!r}")
    if result["triage_level"] not in LEVELS:
        problems.append(f"triage_level {result['triage_level']!r} not in {LEVELS}")
    if result["alarm_priority"] not in PRIORITIES:
        problems.append(f"alarm_priority {result['alarm_priority']!r} not in {PRIORITIES}")
    if result["notice"] != NOTICE:
        problems.append("notice missing")
    for k in ("start_index", "end_index", "fs", "start_s", "end_s"):
        if k not in result["window"]:
            problems.append(f"window.{k} missing")
    if result["quality"].get("verdict") not in ("good", "acceptable", "unusable"):
        problems.append(f"quality.verdict {result['quality'].get('verdict')!r}")
    if result["triage_level"] == "cannot_interpret":
        if result["probabilities"] is not None:
            problems.append("cannot_interpret result carries probabilities")
        if not any(alarm["kind"] == "technical" for alarm in result["alarms"]):
            problems.append("cannot_interpret without a technical alarm")
    else:
        probabilities = result["probabilities"] or {}
        from edge_app.signal_chain.contract import CLASSES   # the model contract names the classes
        for cls in CLASSES:
            if not isinstance(probabilities.get(cls), (int, float)):
                problems.append(f"probabilities.{cls} missing")
    for k in ("version", "sha256"):
        if not result["model"].get(k):
            problems.append(f"model.{k} missing")
    return problems
