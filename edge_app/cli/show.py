"""How a result reads on a terminal (demo, replay, `ecg-edge results`). Every result ends with the notice."""
from __future__ import annotations

from typing import Any

from edge_app.cli.common import NOTICE

LEVEL_TEXT = {"high": "SUSPECTED MI - HIGH PRIORITY", "medium": "ABNORMAL - MEDIUM PRIORITY",
              "none": "no finding above threshold", "cannot_interpret": "CANNOT INTERPRET (technical alarm)"}


def format_result(d: dict[str, Any]) -> str:
    """A result dict (TriageResult.to_dict()) -> a few lines for a human."""
    w = d["window"]
    hr = d.get("heart_rate_bpm")
    q = d["quality"]
    lines = [f"[{d['time'][11:19]}Z] window {w['start_s']:.1f}-{w['end_s']:.1f} s: "
             f"{LEVEL_TEXT.get(d['triage_level'], d['triage_level'])}"
             f"   HR {'--' if hr is None else f'{hr:.0f}'} bpm"
             + (f" ({d['rhythm']['label']})" if (d.get("rhythm") or {}).get("label") else "")
             + f"   quality {q['verdict']}"
             + (f" ({'; '.join(q['reasons'])})" if q.get("reasons") else "")]
    if d.get("probabilities"):
        lines.append("   " + "  ".join(f"{c} {p:.2f}" for c, p in d["probabilities"].items()))
    for f in d["explanation"]["findings"]:
        lines.append(f"   {f['text']}")
    for a in d.get("alarms", []):
        lines.append(f"   ALARM [{a['priority']} {a['kind']}] {a['message']}")
    lines.append(f"   {NOTICE}")
    return "\n".join(lines)
