#!/usr/bin/env python3
"""Replay the built-in real records on one target and compare two targets (used by tools/targets.sh).

Why more than `ecg-edge replay --json`: when two targets disagree, the question is *where*. So `run`
also keeps the model's exact float32 input of every window, and `feed` runs the model of this target
on another target's inputs. Then a difference is pinned either on the signal chain (inputs differ) or
on the int8 kernels (same inputs, different outputs).

    python tools/targets_replay.py run OUT.npz          # on a target: every window's result + model input
    python tools/targets_replay.py feed IN.npz OUT.npz  # on a target: this model on IN's inputs
    python tools/targets_replay.py compare A.npz B.npz [--feed B_ON_A.npz] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

CLASSES = ("NORM", "MI", "STTC", "CD", "HYP")


def _records(extra: list[str] = ()) -> list[Path]:
    """The package's built-in records, then every WFDB record under each extra directory."""
    import edge_app
    d = Path(edge_app.__file__).resolve().parent / "data" / "records"
    found = sorted(d.glob("*.hea"))
    for e in extra:
        found += sorted(Path(e).rglob("*.hea"))
    return found


def cmd_run(out: str, extra: list[str] = ()) -> int:
    """Every window of every built-in record through the daemon's Pipeline (as `ecg-edge replay`)."""
    from edge_app.config import load_config
    from edge_app.inference import load_model
    from edge_app.inference.model import LoadedModel
    from edge_app.pipeline import Pipeline, analyse_record

    cfg = load_config(None)
    model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    captured: list[np.ndarray] = []
    original = LoadedModel.predict_inputs

    def spy(self, ecg, demographics):                 # the window's model input, exactly as fed
        if np.asarray(ecg).shape[-2:] == (1000, 12) and np.any(ecg):
            captured.append(np.asarray(ecg, dtype=np.float32).reshape(1000, 12).copy())
        return original(self, ecg, demographics)

    per_window: list[np.ndarray | None] = []
    original_window = Pipeline.analyse_window

    def window_spy(self, *args, **kwargs):             # the first model run of a window is its prediction
        captured.clear()
        out = original_window(self, *args, **kwargs)
        per_window.append(captured[0] if captured else None)
        return out

    LoadedModel.predict_inputs = spy
    Pipeline.analyse_window = window_spy
    rows, inputs, probs = [], [], []
    records = _records(extra)
    for rec in records:
        per_window.clear()
        results = analyse_record(rec.with_suffix(""), model=model, config=cfg)
        assert len(results) == len(per_window), "one model input per analysed window"
        for r, x in zip(results, per_window):
            d = r.replay_dict()
            p = r.probabilities                          # unrounded (replay_dict rounds to 6 digits)
            rows.append({"record": rec.stem if rec.parent.name == "records" else f"{rec.parent.name}/{rec.stem}", "start_s": d["window_start_s"], "triage": d["triage"],
                         "quality": d["quality"], "heart_rate_bpm": d.get("heart_rate_bpm")})
            probs.append([p[c] for c in CLASSES] if p else [np.nan] * len(CLASSES))
            if p is not None:
                inputs.append(x)
    LoadedModel.predict_inputs = original
    Pipeline.analyse_window = original_window
    meta = {"machine": platform.machine(), "python": platform.python_version(), "rows": rows}
    np.savez_compressed(out, probabilities=np.array(probs, np.float64), inputs=np.array(inputs, np.float32),
                        meta=json.dumps(meta))
    print(f"{len(rows)} windows from {len(records)} records on {meta['machine']} -> {out}")
    return 0


def cmd_feed(inp: str, out: str) -> int:
    """This target's model on another target's exact inputs (patient unknown, as in the replay)."""
    from edge_app.config import load_config
    from edge_app.inference import load_model
    from edge_app.inference.model import demographics_vector

    cfg = load_config(None)
    model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    z = np.load(inp)
    demo = demographics_vector(None, None)
    probs = [[model.predict_inputs(x, demo).probabilities[c] for c in CLASSES] for x in z["inputs"]]
    np.savez_compressed(out, probabilities=np.array(probs, np.float64))
    print(f"{len(probs)} windows fed on {platform.machine()} -> {out}")
    return 0


def compare(a_path: str, b_path: str, feed_path: str | None = None) -> dict:
    """Largest probability difference, triage changes, model-input difference between targets A and B."""
    a, b = np.load(a_path), np.load(b_path)
    ma, mb = json.loads(str(a["meta"])), json.loads(str(b["meta"]))
    ra, rb = ma["rows"], mb["rows"]
    key = lambda r: (r["record"], r["start_s"])                       # noqa: E731
    if [key(r) for r in ra] != [key(r) for r in rb]:
        raise SystemExit("the two runs did not produce the same windows")
    pa, pb = a["probabilities"], b["probabilities"]
    both = ~np.isnan(pa).any(axis=1) & ~np.isnan(pb).any(axis=1)
    diff = np.abs(pa[both] - pb[both])
    changed = [f"{r['record']}@{r['start_s']:g}s {r['triage']}->{s['triage']}"
               for r, s in zip(ra, rb) if r["triage"] != s["triage"] or r["quality"] != s["quality"]]
    windows_differing = [f"{r['record']}@{r['start_s']:g}s" for r, d in
                         zip([r for r, ok in zip(ra, both) if ok], diff) if d.max() > 0]
    out = {"a": ma["machine"], "b": mb["machine"], "windows": len(ra), "with_probabilities": int(both.sum()),
           "max_abs_diff": float(diff.max()) if diff.size else 0.0, "windows_differing": windows_differing,
           "triage_or_quality_changes": changed,
           "input_max_abs_diff_mv": float(np.max(np.abs(a["inputs"] - b["inputs"]))) if a["inputs"].size else 0.0}
    try:                                   # per-class decisions at the shipped thresholds (what triage uses)
        from edge_app.config import load_config
        from edge_app.inference.model import read_manifest
        th = read_manifest(load_config(None).manifest_path)["thresholds"]
        t = np.array([float(th[c]) for c in CLASSES])
        flips = np.argwhere((pa[both] >= t) != (pb[both] >= t))
        rows_ok = [r for r, ok in zip(ra, both) if ok]
        out["class_decisions_changed"] = len(flips)
        out["decision_changes"] = [f"{rows_ok[i]['record']}@{rows_ok[i]['start_s']:g}s {CLASSES[k]}: "
                                   f"{pa[both][i, k]:.4f} vs {pb[both][i, k]:.4f} (threshold {t[k]:.4f})"
                                   for i, k in flips]
        out["closest_to_threshold"] = float(np.min(np.abs(pa[both] - t))) if both.any() else None
    except Exception as e:                 # noqa: BLE001 - the comparison stands without it
        out["class_decisions_changed"] = f"unknown ({e})"
    if feed_path:                          # B's model on A's inputs vs A's own outputs: the kernels alone
        f = np.load(feed_path)["probabilities"]
        out["same_inputs_max_abs_diff"] = float(np.max(np.abs(f - pa[both]))) if f.size else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("out")
    p.add_argument("--extra", action="append", default=[], metavar="DIR",
                   help="also replay every WFDB record under DIR (e.g. tests/fixtures/ptbxl_official_sample)")
    p = sub.add_parser("feed")
    p.add_argument("inp")
    p.add_argument("out")
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--feed", help="B's model on A's inputs (from `feed`)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verdict", action="store_true",
                   help="one line 'PASS|FAIL <summary>': FAIL when any window's triage or quality differs")
    p.add_argument("--save", metavar="FILE", help="also write the comparison as JSON to FILE")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        return cmd_run(a.out, a.extra)
    if a.cmd == "feed":
        return cmd_feed(a.inp, a.out)
    r = compare(a.a, a.b, a.feed)
    if a.save:
        Path(a.save).write_text(json.dumps(r, indent=1))
    if a.verdict:
        ok = not r["triage_or_quality_changes"]
        same = f"; x86's inputs here: max |dP| {r['same_inputs_max_abs_diff']:.6f}" if "same_inputs_max_abs_diff" in r else ""
        print(f"{'PASS' if ok else 'FAIL'} {r['windows']} windows ({r['with_probabilities']} interpreted) vs x86: "
              f"max |dP| {r['max_abs_diff']:.6f} in {len(r['windows_differing'])} window(s); triage/quality "
              f"changes: {len(r['triage_or_quality_changes'])}; class decisions changed: "
              f"{r.get('class_decisions_changed')} {r.get('decision_changes', '')}; model inputs max |d| {r['input_max_abs_diff_mv']:.2g} mV"
              f"{same}")
    elif a.json:
        print(json.dumps(r))
    else:
        print(f"{r['b']} vs {r['a']}: {r['windows']} windows, max |dP| {r['max_abs_diff']:.6f} "
              f"({len(r['windows_differing'])} windows differ), triage/quality changes: "
              f"{', '.join(r['triage_or_quality_changes']) or 'none'}; model inputs differ by at most "
              f"{r['input_max_abs_diff_mv']:.3g} mV" + (f"; same inputs -> max |dP| {r['same_inputs_max_abs_diff']:.6f}"
                                                          if "same_inputs_max_abs_diff" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
