"""Triage levels/alarm priorities and the explanation summary (pure functions, no model)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_app.explanation import cam_profile, cam_spans, explain, top_leads
from edge_app.triage import decide, merge_thresholds

TH = merge_thresholds({"NORM": 0.5, "MI": 0.2, "STTC": 0.3, "CD": 0.4, "HYP": 0.25}, {"CD": 0.6})


def _p(**kw):
    p = {"NORM": 0.9, "MI": 0.01, "STTC": 0.01, "CD": 0.01, "HYP": 0.01}
    p.update(kw)
    return p


def _d(p, verdict="good", hr=72.0, reasons=()):
    return decide(p, TH, verdict, list(reasons), hr, 40, 150, "dev", "rid")


def test_thresholds_manifest_then_config_override():
    assert TH["MI"] == 0.2 and TH["CD"] == 0.6


@pytest.mark.parametrize("p,hr,level,prio,codes", [
    (_p(), 72, "none", "none", []),
    (_p(MI=0.2), 72, "high", "high", ["suspected_mi"]),
    (_p(MI=0.9, STTC=0.8), 72, "high", "high", ["suspected_mi", "abnormal_ecg"]),
    (_p(STTC=0.3), 72, "medium", "medium", ["abnormal_ecg"]),
    (_p(CD=0.5), 72, "none", "none", []),                 # below the config override 0.6
    (_p(HYP=0.3), 72, "medium", "medium", ["abnormal_ecg"]),
    (_p(), 35, "medium", "medium", ["extreme_heart_rate"]),
    (_p(), 180, "medium", "medium", ["extreme_heart_rate"]),
    (_p(), None, "none", "none", []),
    (_p(MI=0.5), 180, "high", "high", ["suspected_mi", "extreme_heart_rate"]),
])
def test_levels_and_priorities(p, hr, level, prio, codes):
    d = _d(p, hr=hr)
    assert (d.level, d.priority) == (level, prio)
    assert [a.code for a in d.alarms] == codes
    assert all(a.kind == "physiological" and a.result_id == "rid" for a in d.alarms)
    if "suspected_mi" in codes:
        assert d.alarms[0].priority == "high" and "not a diagnosis" in d.alarms[0].message


def test_unusable_signal_is_cannot_interpret_with_a_technical_alarm_never_a_finding():
    d = _d(_p(MI=0.99), verdict="unusable", reasons=["LA electrode off"])
    assert d.level == "cannot_interpret" and d.positive == []
    assert [(a.kind, a.code) for a in d.alarms] == [("technical", "signal_unusable")]
    assert "LA electrode off" in d.alarms[0].message
    assert _d(None).level == "cannot_interpret"


def test_cam_spans_name_the_strongest_seconds():
    cam = np.zeros(1000)
    cam[300:360] = 1.0          # 3.0-3.6 s
    cam[700:720] = 0.8          # 7.0-7.2 s (shorter than 0.3 s: widened)
    cam[100:110] = 0.2          # below 70 % of the peak
    assert cam_spans(cam) == [[3.0, 3.6], [6.9, 7.2]]        # widened around its centre 7.1 s
    assert cam_spans(-np.ones(1000)) == [] and cam_spans(np.full(1000, np.nan)) == []


def test_top_leads_ignores_negative_and_missing_importance():
    imp = np.array([0.1, np.nan, -1, 0, 0, 0, 0.5, 2.0, 0.3, 0, 0, 0.05])
    assert top_leads(imp) == ["V2", "V1", "V3"]


def test_explain_builds_text_per_positive_class():
    cam = {"MI": np.r_[np.zeros(200), np.ones(100), np.zeros(700)]}
    imp = {"MI": np.r_[np.zeros(6), [1.0, 2.0, 0.5], np.zeros(3)]}
    e = explain(["MI"], _p(MI=0.91), TH, cam, imp)
    f = e.findings[0]
    assert f.cls == "MI" and f.leads == ["V2", "V1", "V3"] and f.seconds == [[2.0, 3.0]]
    assert "V2, V1, V3" in f.text and "2-3" in f.text and "p=0.91" in f.text
    assert explain([], _p(), TH, None, None).summary == "No finding above threshold."
    # the per-finding CAM the page and PNG shade: 50 points over the 10 s window, 0..1, peak where `seconds` is
    assert len(f.cam) == 50 and min(f.cam) == 0.0 and max(f.cam) == 1.0
    assert [i for i, v in enumerate(f.cam) if v > 0] == list(range(10, 15))       # 2.0-3.0 s = bins 10..14
    assert explain(["MI"], _p(MI=0.91), TH, None, imp).findings[0].cam == []


def test_cam_profile_bins_scales_and_handles_edge_cases():
    cam = np.r_[np.full(500, -2.0), np.linspace(0, 4, 500)]       # negative evidence is not shown
    prof = cam_profile(cam)
    assert len(prof) == 50 and prof[:25] == [0.0] * 25 and prof[-1] == 1.0
    assert all(a <= b for a, b in zip(prof[25:], prof[26:]))         # a ramp stays a ramp
    assert cam_profile(-np.ones(1000)) == [0.0] * 50                 # nothing for the class: all zeros
    assert cam_profile(np.r_[np.nan, np.ones(999)])[0] < 1.0 and max(cam_profile(np.r_[np.nan, np.ones(999)])) == 1.0
    short = cam_profile(np.array([0.0, 1.0, 0.0, 0.0, 0.0]))        # a raw 5-step map is interpolated
    assert len(short) == 50 and max(short) == 1.0 and int(np.argmax(short)) in range(5, 20)
