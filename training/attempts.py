"""Score training attempts the same way, for training/ATTEMPTS.md: one row per trained run (or combination).

    python -m training.attempts --runs training/runs/a training/runs/b [--combine] [--previous quantized_models/previous/1.0.0]

Per attempt: parameters, int8 size (PTQ, small representative set), val macro AUC (float, all of val), MI
sensitivity / specificity on the val REPORTING half at the threshold fitted on the FITTING half (target 0.91),
worst per-class ECE on the reporting half after Platt scaling fitted on the fitting half, and training time.
With --combine the runs are also scored as one ensemble (mean logit). The previous shipped model is scored from
its int8 file (no recalibration, so its ECE is as shipped).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _score(y, z_or_p, fit, rep, is_logit: bool, mi_target: float) -> dict:
    from training.ensemble import fit_platt
    from training.metrics import binary_stats, macro_auc, reliability, threshold_for_sensitivity
    if is_logit:
        pl = fit_platt(z_or_p[fit], y[fit])
        p = pl.apply(z_or_p)
    else:
        p = z_or_p
    k = 1
    t = threshold_for_sensitivity(y[fit, k], p[fit, k], mi_target)
    s = binary_stats(y[rep, k], p[rep, k], t)
    ece = [reliability(y[rep, c], p[rep, c])["ece"] for c in range(y.shape[1])]
    return {"macro_auc_val": macro_auc(y, p), "mi_sens_report": s["sensitivity"], "mi_spec_report": s["specificity"],
            "mi_auc_val": float(__import__("training.metrics", fromlist=["roc_auc"]).roc_auc(y[:, k], p[:, k])),
            "ece_max_report": float(max(ece)), "ece_report": [float(e) for e in ece]}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--combine", action="store_true")
    ap.add_argument("--no-size", action="store_true", help="skip the int8 conversion that measures the file size")
    ap.add_argument("--previous", default="")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ptbxl100"))
    ap.add_argument("--mi-target", type=float, default=0.91)
    ap.add_argument("--out", default=str(ROOT / "training" / "runs" / "attempts.jsonl"))
    a = ap.parse_args(argv)
    from training.data import load_dataset, to_model_inputs
    from training.splits import val_halves
    va = load_dataset(Path(a.data), splits=("val",))
    x, d = to_model_inputs(va)
    fit, rep = val_halves(Path(a.data), va.ecg_id)
    rows = []
    if a.previous:
        from training.evaluate import run_tflite
        pm = json.loads((Path(a.previous) / "manifest.json").read_text())
        P = run_tflite(Path(a.previous) / pm["model_file"], x, d)
        r = {"attempt": f"shipped {pm['model_version']}", "params": pm["training"].get("params"),
             "int8_bytes": pm.get("model_size_bytes"), "seconds": pm["training"].get("seconds")}
        r.update(_score(va.y, P, fit, rep, False, a.mi_target))
        rows.append(r)
    Z = []
    if a.runs:
        import tensorflow as tf
        from training import export
        from training.ensemble import member_logits
        tr = load_dataset(Path(a.data), splits=("train",))
        idx = np.random.default_rng(0).permutation(len(tr))[:100]
        trx, trd = to_model_inputs(tr.subset(idx))
        for run in map(Path, a.runs):
            m = tf.keras.models.load_model(run / "model.keras", compile=False)
            info = json.loads((run / "train_info.json").read_text())
            z = member_logits(m, x, d)
            Z.append(z)
            q = None if a.no_size else export.convert(m, run / "attempt_int8.tflite", trx, trd)
            c = info["config"]
            recipe = (f"widths {c['widths']}{' +SE' if c.get('se') else ''}, crop {c.get('crop') or 'none'}, "
                      f"{c['epochs']} ep, SWA from {c.get('swa_start')}, weighting {c.get('class_weighting', 'sqrt')}")
            r = {"attempt": run.name, "recipe": recipe, "params": int(m.count_params()), "int8_bytes": None if q is None else q.stat().st_size,
                 "seconds": info["seconds"], "best_epoch": info["best_epoch"]}
            r.update(_score(va.y, z, fit, rep, True, a.mi_target))
            rows.append(r)
        if a.combine and len(Z) > 1:
            r = {"attempt": "+".join(Path(p).name for p in a.runs), "recipe": "mean logit + Platt",
                 "params": sum(x_["params"] for x_ in rows if x_.get("recipe") and x_["recipe"] != "mean logit + Platt"),
                 "int8_bytes": None, "seconds": sum(x_["seconds"] for x_ in rows[-len(Z):])}
            r.update(_score(va.y, np.mean(Z, axis=0), fit, rep, True, a.mi_target))
            rows.append(r)
    with open(a.out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for r in rows:
        print(f"| {r['attempt']} | {r.get('recipe', '')} | {r['params']} | {r['int8_bytes']} | {r['macro_auc_val']:.4f} | "
              f"{r['mi_auc_val']:.4f} | {r['mi_sens_report']:.3f} / {r['mi_spec_report']:.3f} | {r['ece_max_report']:.3f} | "
              f"{(r['seconds'] or 0):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
