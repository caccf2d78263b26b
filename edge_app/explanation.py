"""Name the leads and the seconds that drove each positive finding.

Inputs are the model's per-class Grad-CAM over time (from the exported feature map, numpy only; see
edge_app.inference.gradcam) and a per-lead occlusion importance (the drop of a class's logit when one
lead is zeroed). Why both: the CAM is cheap and says *when* (which beats), occlusion says *where*
(which leads), which is how a clinician reads a 12-lead ECG (e.g. "ST changes V2-V4, seconds 3-6").

The summary is deliberately modest: it says what the model looked at, not why the heart is ill.
"""
from __future__ import annotations

import numpy as np

from edge_app.results import Explanation, Finding
from edge_app.signal_chain.contract import FS_HZ, LEADS
from edge_app.triage import CLASS_TEXT

TOP_LEADS = 3
CAM_FRACTION = 0.7       # seconds where the class's CAM is >= this fraction of its positive maximum
MIN_SPAN_S = 0.3
CAM_POINTS = 50          # Finding.cam: one value per 0.2 s of a 10 s window (what the page / PNG shade)


def cam_spans(cam: np.ndarray, fs: float = FS_HZ, fraction: float = CAM_FRACTION,
              max_spans: int = 3) -> list[list[float]]:
    """Time spans [[start_s, end_s], ...] where the CAM is high, strongest first."""
    curve = np.asarray(cam, dtype=np.float64).reshape(-1)
    if curve.size == 0 or not np.any(np.isfinite(curve)):
        return []
    peak = np.nanmax(curve)
    if not np.isfinite(peak) or peak <= 0:
        return []
    high = curve >= fraction * peak
    runs = []                                   # (first index, end index, weight) of each run of high points
    start, n_points = 0, len(curve)
    while start < n_points:
        if high[start]:
            end = start
            while end < n_points and high[end]:
                end += 1
            runs.append((start, end, float(np.sum(curve[start:end]))))
            start = end
        else:
            start += 1
    runs.sort(key=lambda run: -run[2])
    out = []
    for first, end, _weight in runs[:max_spans]:
        s0, s1 = first / fs, end / fs
        if s1 - s0 < MIN_SPAN_S:
            mid = (s0 + s1) / 2
            s0, s1 = max(0.0, mid - MIN_SPAN_S / 2), min(n_points / fs, mid + MIN_SPAN_S / 2)
        out.append([round(s0, 1), round(s1, 1)])
    return sorted(out)


def cam_profile(cam: np.ndarray, points: int = CAM_POINTS) -> list[float]:
    """The class's CAM resampled to `points` equal bins over the window (mean of the positive part per bin),
    scaled so the strongest bin is 1.0: 0..1, on the same positive-part scale `cam_spans` thresholds, so the
    shading a display draws from it agrees with `seconds`. All zeros when nothing speaks for the class."""
    c = np.nan_to_num(np.asarray(cam, dtype=np.float64).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    if c.size == 0 or points <= 0:
        return []
    pos = np.maximum(c, 0.0)
    if pos.size >= points:
        edges = np.linspace(0, pos.size, points + 1).round().astype(int)
        prof = np.array([pos[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    else:
        prof = np.interp((np.arange(points) + 0.5) * pos.size / points - 0.5, np.arange(pos.size), pos)
    peak = float(prof.max())
    if peak <= 0:
        return [0.0] * points
    return [round(float(v), 3) for v in prof / peak]


def top_leads(importance: np.ndarray | None, k: int = TOP_LEADS) -> list[str]:
    if importance is None:
        return []
    imp = np.asarray(importance, dtype=np.float64)
    order = [i for i in np.argsort(-np.nan_to_num(imp, nan=-np.inf)) if np.isfinite(imp[i]) and imp[i] > 0]
    return [LEADS[i] for i in order[:k]]


def explain(positive: list[str], probabilities: dict[str, float], thresholds: dict[str, float],
            cam: dict[str, np.ndarray] | None, lead_importance: dict[str, np.ndarray] | None,
            window_offset_s: float = 0.0) -> Explanation:
    """Build the explanation for the classes above threshold (NORM is never 'explained')."""
    findings = []
    for c in positive:
        leads = top_leads(None if lead_importance is None else lead_importance.get(c))
        secs = cam_spans(cam[c]) if cam is not None and c in cam else []
        where = f"leads {', '.join(leads)}" if leads else "no single lead"
        when = ("; seconds " + ", ".join(f"{a:g}-{b:g}" for a, b in secs)) if secs else ""
        text = f"{CLASS_TEXT.get(c, c)} (p={probabilities[c]:.2f}): driven by {where}{when}"
        findings.append(Finding(cls=c, probability=round(float(probabilities[c]), 4),
                                threshold=float(thresholds[c]), leads=leads, seconds=secs, text=text,
                                cam=cam_profile(cam[c]) if cam is not None and c in cam else []))
    if findings:
        summary = "; ".join(f.text for f in findings) + " (seconds from the window start)."
    else:
        summary = "No finding above threshold."
    return Explanation(findings=findings, summary=summary)
