"""EC57-style evaluation of the rhythm detectors on MIT-BIH records (docs/signal_chain.md, "Rhythm").

  python -m training.rhythm_eval [--data ../shared/data/mitdb_dev] [--json]

Per record and in total, in the way ANSI/AAMI EC57 reports arrhythmia detectors:
- AF: duration sensitivity (reference AF time covered by detected AF) and positive predictivity
  (detected AF time that is reference AF); reference AF = the cardiologists' "(AFIB" rhythm.
- VT and VF: episode sensitivity (reference episodes overlapped by a detection) and positive
  predictivity (detections overlapping a reference episode); VF reference = "(VFL"/"(VF".
- false VT/VF alarms per hour: switches of the live monitor to VT or VF (the HIGH alarms) that fall in
  no reference ventricular tachyarrhythmia (VT, VFL, VF; 2 s of slack);
- VF alarm delay: reference VF onset -> the moment the live monitor switched to VF.
The signal is resampled to 100 Hz (the rate the daemon's monitor runs at) with a polyphase filter and
run through RhythmMonitor in 1 s blocks, as in the daemon (edge_app.signal_chain.rhythm.rhythm_analysis). Development tool; the
device never imports it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mitdb_dev"
VENTRICULAR = ("(VT", "(VFL", "(VF")


@dataclass
class RecordScore:
    record: str
    hours: float
    af_ref_s: float
    af_det_s: float
    af_overlap_s: float
    vt_ref: int
    vt_ref_found: int
    vt_det: int
    vt_det_true: int
    vf_ref: int
    vf_ref_found: int
    vf_det: int
    vf_det_true: int
    false_alarms: int
    vf_delays_s: list


def reference_episodes(base: str) -> list[tuple[str, float, float]]:
    import wfdb
    ann = wfdb.rdann(base, "atr")
    hdr = wfdb.rdheader(base)
    marks = [(ann.sample[i] / ann.fs, ann.aux_note[i].strip("\x00")) for i in range(len(ann.sample))
             if ann.symbol[i] == "+" and ann.aux_note[i].strip("\x00")]
    out = []
    for j, (t, label) in enumerate(marks):
        end = marks[j + 1][0] if j + 1 < len(marks) else hdr.sig_len / hdr.fs
        out.append((label, t, end))
    return out


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def score_record(name: str, ref: list, episodes: list, changes: list, hours: float) -> RecordScore:
    af_ref = [(s, e) for lab, s, e in ref if lab == "(AFIB"]
    af_det = [(e.start_s, e.end_s) for e in episodes if e.rhythm == "AF"]
    overlap = sum(_overlap(a, b) for a in af_ref for b in af_det)
    vt_ref = [(s, e) for lab, s, e in ref if lab == "(VT"]
    vf_ref = [(s, e) for lab, s, e in ref if lab in ("(VFL", "(VF")]
    vent_ref = [(s, e) for lab, s, e in ref if lab in VENTRICULAR]
    vt_det = [(e.start_s, e.end_s) for e in episodes if e.rhythm == "VT"]
    vf_det = [(e.start_s, e.end_s) for e in episodes if e.rhythm == "VF"]
    vent_det = vt_det + vf_det

    def hit(x: tuple[float, float], pool: list) -> bool:
        return any(_overlap((x[0] - 0.5, x[1] + 0.5), p) > 0 for p in pool)

    vf_alarms = [c.t_s for c in changes if c.rhythm == "VF"]
    delays = []
    for s, e in vf_ref:
        later = [t for t in vf_alarms if s <= t <= e + 10.0]
        if later:
            delays.append(round(min(later) - s, 1))
    return RecordScore(
        record=name, hours=hours,
        af_ref_s=sum(e - s for s, e in af_ref), af_det_s=sum(e - s for s, e in af_det), af_overlap_s=overlap,
        vt_ref=len(vt_ref), vt_ref_found=sum(hit(x, vent_det) for x in vt_ref),
        vt_det=len(vt_det), vt_det_true=sum(hit(x, vent_ref) for x in vt_det),
        vf_ref=len(vf_ref), vf_ref_found=sum(hit(x, vf_det) for x in vf_ref),
        vf_det=len(vf_det), vf_det_true=sum(hit(x, vent_ref) for x in vf_det),
        false_alarms=sum(not hit((c.t_s - 2.0, c.t_s), vent_ref) for c in changes if c.rhythm in ("VT", "VF")),
        vf_delays_s=delays)


def run_record(base: str) -> tuple[list, list, float]:
    """The record through the daemon's own monitor (rhythm_analysis: 100 Hz, 1 s blocks)."""
    from firmware_bridge.records import read_wfdb_uv
    from edge_app.signal_chain.rhythm import rhythm_analysis
    rec = read_wfdb_uv(base)
    x = rec.signals_uv
    if not np.all(np.isfinite(x)):
        raise SystemExit(f"{base}: missing samples; this evaluation needs complete records")
    episodes, changes = rhythm_analysis(x, rec.fs)
    return episodes, changes, x.shape[0] / rec.fs / 3600.0


def pct(a: float, b: float) -> float | None:
    return None if b <= 0 else round(100.0 * a / b, 1)


def totals(rows: list[RecordScore]) -> dict:
    s = lambda f: sum(getattr(r, f) for r in rows)  # noqa: E731
    delays = [d for r in rows for d in r.vf_delays_s]
    return {
        "af_duration_se": pct(s("af_overlap_s"), s("af_ref_s")), "af_duration_ppv": pct(s("af_overlap_s"), s("af_det_s")),
        "vt_episode_se": pct(s("vt_ref_found"), s("vt_ref")), "vt_episode_ppv": pct(s("vt_det_true"), s("vt_det")),
        "vf_episode_se": pct(s("vf_ref_found"), s("vf_ref")), "vf_episode_ppv": pct(s("vf_det_true"), s("vf_det")),
        "false_vt_vf_alarms_per_hour": round(s("false_alarms") / max(1e-9, s("hours")), 2),
        "vf_alarm_delay_s_median": None if not delays else float(np.median(delays)),
        "vf_alarm_delay_s_max": None if not delays else float(max(delays)),
        "hours": round(s("hours"), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.rhythm_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    heads = sorted(args.data.glob("*.hea"))
    if not heads:
        print(f"error: no WFDB records in {args.data}", file=sys.stderr)
        return 2
    rows = []
    for hea in heads:
        base = str(hea.with_suffix(""))
        if not Path(base + ".atr").exists():
            continue
        episodes, changes, hours = run_record(base)
        rows.append(score_record(hea.stem, reference_episodes(base), episodes, changes, hours))
    tot = totals(rows)
    if args.json:
        print(json.dumps({"records": [asdict(r) for r in rows], "total": tot}))
        return 0
    print(f"{'record':>6} {'AF ref s':>8} {'AF Se%':>7} {'AF +P%':>7} {'VT Se':>7} {'VT +P':>7} "
          f"{'VF Se':>7} {'VF +P':>7} {'false/h':>8} {'VF delay s':>10}")
    for r in rows:
        print(f"{r.record:>6} {r.af_ref_s:8.0f} {str(pct(r.af_overlap_s, r.af_ref_s)):>7} "
              f"{str(pct(r.af_overlap_s, r.af_det_s)):>7} {r.vt_ref_found:>3}/{r.vt_ref:<3} {r.vt_det_true:>3}/{r.vt_det:<3} "
              f"{r.vf_ref_found:>3}/{r.vf_ref:<3} {r.vf_det_true:>3}/{r.vf_det:<3} {r.false_alarms / r.hours:8.2f} "
              f"{','.join(str(d) for d in r.vf_delays_s) or '-':>10}")
    print("total:", json.dumps(tot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
