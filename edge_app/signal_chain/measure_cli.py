"""`ecg-edge measure PATH [--channel N] [--json]`: beats, heart rate, rhythm and signal quality of a WFDB record.

Reads any WFDB record (any rate, 1-12 channels; PATH without extension, as WFDB does) and prints
the R peaks (sample indices at the record's own rate), heart rate, RR statistics, the rhythm
episodes (`episodes`: start_s, end_s, rhythm — from the daemon's own live monitor, rhythm.py) and the
quality verdict with its reasons. --json prints exactly one JSON object for machines.

Which signal the beats come from: --channel N (0-based) if given; otherwise all leads together
(multi-lead agreement) when the record has 3 or more channels, else channel 0 (with 1-2 channels,
e.g. MIT-BIH's MLII + V1, the second channel is often a noisy chest lead, and pooling two leads
cannot out-vote one bad one). Quality is judged per 10 s window on the leads that are there.
A triage aid, not a diagnosis.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from firmware_bridge.leads import canonical_lead

from .contract import LEADS

WINDOW_S = 10.0
DISCLAIMER = "Triage aid, not a diagnosis."


class MeasureError(Exception):
    """A record that cannot be measured (missing, unreadable, bad channel); message says how to fix it."""


def _read(path: str) -> tuple[np.ndarray, float, list[str], str]:
    """The appliance's one WFDB reader (units -> microvolts from the header, missing samples NaN)."""
    from firmware_bridge.records import RecordError, read_wfdb_uv
    try:
        rec = read_wfdb_uv(path)
    except RecordError as e:
        raise MeasureError(str(e)) from None
    return rec.signals_uv, rec.fs, list(rec.sig_names), rec.name


def _fill_gaps(x: np.ndarray) -> tuple[np.ndarray, int]:
    """WFDB marks missing samples as NaN: interpolate them (counted and reported)."""
    bad = ~np.isfinite(x)
    nbad = int(bad.sum())
    if nbad == 0:
        return x, 0
    out = x.copy()
    idx = np.arange(x.shape[0])
    for c in range(x.shape[1]):                     # loop over channels, not samples
        m = bad[:, c]
        if m.all():
            out[:, c] = 0.0
        elif m.any():
            out[m, c] = np.interp(idx[m], idx[~m], x[~m, c])
    return out, nbad


def _standard_order(names: list[str]) -> list[int] | None:
    """Column order that gives the 12 standard leads in PTB-XL order, if the record has them all."""
    canon = [canonical_lead(n) for n in names]
    if len(names) != 12 or set(canon) != set(LEADS):
        return None
    return [canon.index(ld) for ld in LEADS]


def _quality(x: np.ndarray, fs: float, names: tuple[str, ...]) -> dict:
    """Per-10 s-window quality, summarised for the whole record."""
    from .quality import QualityError, ecg_quality
    n = x.shape[0]
    w = int(round(WINDOW_S * fs))
    starts = list(range(0, max(1, n - w + 1), w)) if n >= w else [0]
    verdicts: Counter = Counter()
    reasons: Counter = Counter()
    first = None
    for s in starts:                                 # loop over 10 s windows
        seg = x[s:s + w] if n >= w else x
        try:
            q = ecg_quality(seg, fs, leads=names)
        except QualityError as e:
            return {"verdict": "unusable", "reasons": [f"cannot judge quality: {e}"], "windows": {}}
        first = first or q
        verdicts[q.verdict] += 1
        for r in q.reasons:
            reasons[r] += 1
    nw = sum(verdicts.values())
    if nw == 1:
        verdict = first.verdict
        rs = list(first.reasons)
    else:
        if verdicts["unusable"] > nw / 2:
            verdict = "unusable"
        elif verdicts["good"] == nw:
            verdict = "good"
        else:
            verdict = "acceptable"
        rs = [f"{r} ({c} of {nw} windows)" for r, c in reasons.most_common()]
        if verdicts["unusable"]:
            rs.insert(0, f"{verdicts['unusable']} of {nw} 10-s windows cannot be interpreted")
    out = {"verdict": verdict, "reasons": rs, "windows": {k: verdicts.get(k, 0) for k in ("good", "acceptable", "unusable")}}
    if nw == 1:
        out["leads"] = {k: {"verdict": v.verdict, "flags": v.flags} for k, v in first.leads.items()}
        out["electrodes_off"] = list(first.electrodes_off)
    return out


def measure(path: str, channel: int | None = None) -> dict:
    """Everything `ecg-edge measure` prints, as a JSON-safe dict."""
    from .beats import BeatError, ecg_measure, ecg_peaks
    from .rhythm import ecg_rhythm
    x, fs, names, rec_name = _read(path)
    nch = x.shape[1]
    if channel is not None and not 0 <= channel < nch:
        raise MeasureError(f"--channel {channel}: record {rec_name} has channels 0..{nch - 1} ({', '.join(names)})")
    x, n_missing = _fill_gaps(x)
    order = _standard_order(names)
    if order is not None:
        xq, qnames = x[:, order], tuple(LEADS)
    else:
        xq, qnames = x, tuple(names)
    if channel is not None:
        used = [channel]
    elif nch >= 3:
        used = list(range(nch))
    else:
        used = [0]
    xs = x[:, used]
    try:
        peaks = ecg_peaks(xs, fs)
        m = ecg_measure(xs, fs, peaks=peaks)
        episodes = ecg_rhythm(xs, fs)
    except BeatError as e:
        raise MeasureError(f"{rec_name}: {e}") from None
    q = _quality(xq, fs, qnames)
    if n_missing:
        q["reasons"].append(f"{n_missing} missing samples were interpolated")
    rnd = (lambda v: None if v is None else round(float(v), 2))
    return {
        "record": rec_name,
        "fs": fs,
        "n_samples": int(x.shape[0]),
        "duration_s": round(x.shape[0] / fs, 3),
        "channels": names,
        "channels_used": [names[i] for i in used],
        "r_peaks": [int(p) for p in peaks],
        "n_beats": m.n_beats,
        "heart_rate_bpm": rnd(m.heart_rate_bpm),
        "rr": {"mean_ms": rnd(m.mean_rr_ms), "rmssd_ms": rnd(m.rmssd_ms), "cv": rnd(m.rr_cv),
               "irregular": m.irregular, "rr_ms": m.rr_ms},
        "qrs_ms": rnd(m.qrs_ms),
        "episodes": [e.to_dict() for e in episodes],
        "quality": q,
        "note": DISCLAIMER,
    }


def _human(d: dict) -> str:
    q = d["quality"]
    hr = "-" if d["heart_rate_bpm"] is None else f"{d['heart_rate_bpm']:.0f} bpm"
    lines = [
        f"Record {d['record']}: {d['duration_s']:.1f} s at {d['fs']:g} Hz, channels {', '.join(d['channels'])}",
        f"Heart rate      {hr}   ({d['n_beats']} beats on {', '.join(d['channels_used'])})",
    ]
    rr = d["rr"]
    if rr["mean_ms"] is not None:
        irr = "" if rr["irregular"] is None else ("  IRREGULAR" if rr["irregular"] else "  regular")
        cv = "-" if rr["cv"] is None else f"{rr['cv']:.3f}"
        rmssd = "-" if rr["rmssd_ms"] is None else f"{rr['rmssd_ms']:.0f} ms"
        lines.append(f"RR intervals    mean {rr['mean_ms']:.0f} ms, RMSSD {rmssd}, CV {cv}{irr}")
    if d["qrs_ms"] is not None:
        lines.append(f"QRS (approx.)   {d['qrs_ms']:.0f} ms")
    eps = d.get("episodes") or []
    if eps:
        shown = [f"{e['rhythm']} {e['start_s']:.0f}-{e['end_s']:.0f} s" for e in eps[:8]]
        more = f" ... {len(eps) - 8} more (use --json)" if len(eps) > 8 else ""
        lines.append(f"Rhythm          {', '.join(shown)}{more}")
    wins = q.get("windows") or {}
    wtxt = f"  (10-s windows: {wins.get('good', 0)} good, {wins.get('acceptable', 0)} acceptable, " \
           f"{wins.get('unusable', 0)} unusable)" if sum(wins.values() or [0]) > 1 else ""
    lines.append(f"Signal quality  {q['verdict'].upper()}{wtxt}")
    for r in q["reasons"][:12]:
        lines.append(f"  - {r}")
    if len(q["reasons"]) > 12:
        lines.append(f"  ... {len(q['reasons']) - 12} more (use --json)")
    pk = d["r_peaks"]
    show = ", ".join(str(p) for p in pk[:10]) + (" ..." if len(pk) > 10 else "")
    lines.append(f"R peaks (samples) {show}")
    lines.append(d["note"])
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecg-edge measure",
                                description="Beats, heart rate and signal quality of a WFDB record. " + DISCLAIMER)
    p.add_argument("path", metavar="PATH", help="WFDB record path without extension (e.g. mitdb/100)")
    p.add_argument("--channel", type=int, default=None, metavar="N",
                   help="0-based channel for beat detection (default: all leads with >= 3 channels, else channel 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for machines)")
    return p


def run(argv: list[str]) -> int:
    """Entry point for `ecg-edge measure ...` (argv without the 'measure' word). Returns the exit code:
    0 measured, 2 bad input (message on stderr, or a JSON {"error": ...} with --json)."""
    argv = list(argv)
    if argv and argv[0] == "measure":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        d = measure(args.path, args.channel)
    except MeasureError as e:
        if args.json:
            print(json.dumps({"error": str(e)}))
        print(f"ecg-edge measure: {e}", file=sys.stderr)
        return 2
    print(json.dumps(d) if args.json else _human(d))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
