"""ecg-train: reproduce the shipped model from ../shared/data on a CPU.

  ecg-train all        data -> train -> convert (float + int8) -> thresholds -> manifest + golden -> report
  ecg-train train      train only (Keras model into the run directory)
  ecg-train combine    members -> one calibrated model (mean logit + Platt fitted on the val fitting half)
  ecg-train convert    int8 (and float) TFLite + Grad-CAM head + thresholds + manifest from a trained run
  ecg-train evaluate   evaluate a .tflite through LiteRT on a shard-layout directory (--json for machines)
  ecg-train report     evaluation report (JSON + Markdown + PNG) and MODEL_CARD.md into the model directory
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ECG_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_RUN = ROOT / "training" / "runs" / "main"
DEFAULT_OUT = ROOT / "quantized_models"
MODEL_NAME = "ecg_resnet1d_demo_int8"


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _load_split(data_dir: Path, split: str, limit: int | None = None):
    from training.data import load_dataset, to_model_inputs
    ds = load_dataset(data_dir, splits=(split,))
    if limit:
        ds = ds.subset(np.arange(min(limit, len(ds))))
    ecg, demo = to_model_inputs(ds)
    return ds, ecg, demo


def cmd_train(a) -> dict:
    _quiet_tf()
    from training.train import TrainConfig, train
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    _say(f"loading shards from {data}")
    tr, trx, trd = _load_split(data, "train", a.limit)
    va, vax, vad = _load_split(data, "val", a.limit)
    _say(f"train {len(tr)} records, val {len(va)} records (contract: make_model_input + demographics_vector)")
    _say("expect ~25-45 s per epoch on 2 CPU cores for the full data")
    cfg = TrainConfig(epochs=a.epochs, seed=a.seed)
    if a.widths:
        cfg.widths = tuple(int(w) for w in a.widths.split(","))
    if a.batch_size:
        cfg.batch_size = a.batch_size
    cfg.stem_pool = bool(a.stem_pool)
    if a.weight_decay is not None:
        cfg.weight_decay = a.weight_decay
    if a.lr is not None:
        cfg.lr = a.lr
    if a.patience is not None:
        cfg.patience = a.patience
    if a.swa_start is not None:
        cfg.swa_start = a.swa_start
    for k in ("crop", "eval_every", "threads", "label_smoothing", "class_weighting", "kernel"):
        if getattr(a, k, None) is not None:
            setattr(cfg, k, getattr(a, k))
    if getattr(a, "se", False):
        cfg.se = True
    run = Path(a.run)
    from training.export import git_commit
    commit = git_commit(ROOT)
    _, info = train(trx, trd, tr.y, vax, vad, va.y, cfg, run, progress=_say)
    info["git_commit"] = commit
    info["data"] = {"dir": str(data), "train_records": len(tr), "val_records": len(va),
                    "train_prevalence": tr.y.mean(0).tolist(), "val_prevalence": va.y.mean(0).tolist()}
    (run / "train_info.json").write_text(json.dumps(info, indent=1))
    _say(f"trained {info['epochs_run']} epochs in {info['seconds']:.0f}s; best epoch {info['best_epoch']} "
         f"val macro AUC (float, Keras) {info['best_val_macro_auc_float']:.4f}")
    return info


def cmd_combine(a) -> dict:
    """Members (trained runs) -> one calibrated Keras model in --run (see training/ensemble.py).

    Platt scaling per class is fitted on the FITTING half of val only (training/splits.py); the reporting half
    is never used here."""
    _quiet_tf()
    import tensorflow as tf
    from edge_app.signal_chain.contract import CLASSES
    from training.ensemble import combine, fit_platt, member_logits
    from training.metrics import macro_auc
    from training.splits import val_halves
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    run = Path(a.run)
    run.mkdir(parents=True, exist_ok=True)
    member_dirs = [Path(m) for m in a.members]
    va, vax, vad = _load_split(data, "val", a.limit)
    fit, _ = val_halves(data, va.ecg_id)
    members, infos, Z = [], [], []
    for k, md in enumerate(member_dirs):
        if not (md / "model.keras").exists():
            raise FileNotFoundError(f"member {md} has no model.keras: train it first (ecg-train train --run {md})")
        m = tf.keras.models.load_model(md / "model.keras", compile=False)
        members.append(m)
        infos.append(json.loads((md / "train_info.json").read_text()))
        Z.append(member_logits(m, vax, vad))
        _say(f"member {k} ({md.name}): {m.count_params()} parameters, val macro AUC {macro_auc(va.y, 1 / (1 + np.exp(-Z[-1]))):.4f}")
    z = np.mean(Z, axis=0)
    platt = fit_platt(z[fit], va.y[fit]) if not a.no_calibration else None
    model = combine(members, platt)
    pv = np.asarray(model.predict({"ecg": vax, "demographics": vad}, batch_size=256, verbose=0)["probabilities"])
    _say(f"combined {len(members)} member(s): val macro AUC {macro_auc(va.y, pv):.4f}; Platt fitted on the fitting half "
         f"({int(fit.sum())} records): " + ", ".join(f"{c} a={platt.a[i]:.2f} k={platt.k[i]:+.2f}" for i, c in enumerate(CLASSES))
         if platt else "")
    model.save(run / "model.keras")
    cfg0 = dict(infos[0]["config"])
    info = {"members": [{"run": str(md), "params": int(m.count_params()), "config": inf["config"],
                         "epochs_run": inf["epochs_run"], "best_epoch": inf["best_epoch"], "seconds": inf["seconds"],
                         "best_val_macro_auc_float": inf["best_val_macro_auc_float"], "git_commit": inf.get("git_commit")}
                        for md, m, inf in zip(member_dirs, members, infos)],
            "calibration": {"method": "Platt scaling per class on the mean member logit (folded into the head)",
                            "fitted_on": f"val fitting half ({int(fit.sum())} records; split by patient, training/splits.py)",
                            "params": platt.to_json() if platt else None},
            "epochs_run": sum(i["epochs_run"] for i in infos), "best_epoch": [i["best_epoch"] for i in infos],
            "seconds": sum(i["seconds"] for i in infos), "best_val_macro_auc_float": macro_auc(va.y, pv),
            "config": {"widths": cfg0["widths"], "stem_pool": cfg0.get("stem_pool", False),
                       "members": [i["config"] for i in infos]},
            "git_commit": infos[0].get("git_commit"), "data": infos[0].get("data", {})}
    (run / "train_info.json").write_text(json.dumps(info, indent=1))
    return info


def cmd_convert(a) -> Path:
    _quiet_tf()
    import tensorflow as tf
    from edge_app.signal_chain.contract import CLASSES
    from training import export
    from training.evaluate import run_tflite, summarize
    from training.metrics import binary_stats, threshold_for_sensitivity, threshold_youden
    from training.model import head_weights
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    run, out = Path(a.run), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = json.loads((run / "train_info.json").read_text())
    model = tf.keras.models.load_model(run / "model.keras", compile=False)
    widths = info["config"]["widths"]
    stem_pool = bool(info["config"].get("stem_pool", False))
    tr, trx, trd = _load_split(data, "train", a.limit)
    va, vax, vad = _load_split(data, "val", a.limit)
    # Representative set: real train ECGs, demographics as the device sees them (known / partial / unknown).
    # The calibrator takes min/max per tensor, so a few extreme-amplitude records coarsen every step of the
    # input scale; candidates exclude records above an amplitude cap (the rare larger inputs saturate instead)
    # and the one whose int8 outputs track the float model best on OTHER train records is kept (not val).
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(trx))
    check_idx, pool = perm[:min(500, len(perm) // 3)], perm[min(500, len(perm) // 3):]
    amp = np.abs(trx[pool]).max(axis=(1, 2))
    _say("converting float TFLite")
    t0 = time.time()
    float_path = export.convert(model, run / f"{MODEL_NAME.replace('_int8', '')}_float32.tflite")
    Pf_check = run_tflite(float_path, trx[check_idx], trd[check_idx])
    best = None
    for k, (cap, size) in enumerate(((4.0, a.rep_size), (6.0, a.rep_size), (4.0, 2 * a.rep_size))):
        cand = pool[amp < cap]
        idx = np.random.default_rng(k + 1).choice(cand, size=min(size, len(cand)), replace=False)
        rep_d = trd[idx].copy()
        m = np.random.default_rng(100 + k).random(len(idx))
        rep_d[m < 0.2, :2] = 0.0
        rep_d[(m >= 0.2) & (m < 0.4), 2:] = 0.0
        tmp = run / f"int8_candidate{k}.tflite"
        export.convert(model, tmp, trx[idx], rep_d)
        diff = float(np.mean(np.abs(run_tflite(tmp, trx[check_idx], trd[check_idx]) - Pf_check)))
        _say(f"int8 candidate {k}: {len(idx)} ECGs with max |x| < {cap} mV -> mean |int8-float| {diff:.4f} on {len(check_idx)} other train ECGs")
        if best is None or diff < best[0]:
            best = (diff, k, cap, len(idx), tmp)
    int8_path = out / f"{MODEL_NAME}.tflite"
    int8_path.write_bytes(best[4].read_bytes())
    _say(f"converted in {time.time() - t0:.0f}s: int8 {int8_path.stat().st_size} bytes (candidate {best[1]}), "
         f"float {float_path.stat().st_size} bytes")
    cam_file = f"{MODEL_NAME}.gradcam.npz"
    export.save_gradcam_head(head_weights(model), widths, out / cam_file, stem_pool)

    _say("evaluating float and int8 on val through LiteRT")
    Pf = run_tflite(float_path, vax, vad)
    Pq = run_tflite(int8_path, vax, vad)
    from training.splits import val_halves
    fit, rep = val_halves(data, va.ecg_id)
    np.savez(run / "val_probs.npz", float=Pf, int8=Pq, y=va.y, ecg_id=va.ecg_id, fit=fit)
    # Thresholds are fitted on the FITTING half of val; every figure below is measured on the REPORTING half
    # (AUC, which no threshold or monotone calibration changes, also on all of val).
    thresholds, ops = {}, {}
    mi_target = float(a.mi_sensitivity)
    for k, c in enumerate(CLASSES):
        y, p = va.y[fit, k], Pq[fit, k]
        t_sens = threshold_for_sensitivity(y, p, mi_target)
        t_you = threshold_youden(y, p)
        key = f"sensitivity_{mi_target:.2f}"
        ops[c] = {"fitted_on": "val fitting half", "youden": binary_stats(y, p, t_you), key: binary_stats(y, p, t_sens),
                  "on_reporting_half": {"youden": binary_stats(va.y[rep, k], Pq[rep, k], t_you),
                                        key: binary_stats(va.y[rep, k], Pq[rep, k], t_sens)}}
        thresholds[c] = t_sens if c == "MI" else t_you
        ops[c]["chosen"] = key if c == "MI" else "youden"
    sq, sf = summarize(va.y[rep], Pq[rep], thresholds), summarize(va.y[rep], Pf[rep], thresholds)
    full_q, full_f = summarize(va.y, Pq, None), summarize(va.y, Pf, None)
    metrics = {"split": "val reporting half (PTB-XL strat_fold 9, patients split by training/splits.py); "
                        "thresholds and calibration fitted on the other half",
               "n": sq["n"], "int8": sq, "float": sf,
               "val_full": {"n": full_q["n"], "macro_auc_int8": full_q["macro_auc"], "macro_auc_float": full_f["macro_auc"],
                            "auc_int8": {c: full_q["per_class"][c]["auc"] for c in CLASSES}},
               "int8_vs_float": {"macro_auc_diff": full_q["macro_auc"] - full_f["macro_auc"],
                                 "mean_abs_prob_diff": float(np.mean(np.abs(Pq - Pf))),
                                 "max_abs_prob_diff": float(np.max(np.abs(Pq - Pf))),
                                 "on": "all of val"}}
    fmap_shape = list(np.asarray(model({"ecg": vax[:1], "demographics": vad[:1]}, training=False)["feature_map"]).shape[1:])
    training = {"data": info.get("data", {}), "split": {"train": "PTB-XL strat_fold 1-8", "val": "strat_fold 9 (selection, thresholds, report)",
                                                         "test": "strat_fold 10 not used (kept aside)"},
                "epochs": info["epochs_run"], "best_epoch": info["best_epoch"], "seconds": info["seconds"],
                "git_commit": info.get("git_commit", "unknown (trained before commits were recorded)"),
                "git_commit_convert": export.git_commit(ROOT), "config": info["config"],
                "params": int(model.count_params())}
    if "members" in info:
        training["members"] = info["members"]
        training["calibration"] = info["calibration"]
    quant = {"type": "full-integer post-training quantization (TFLITE_BUILTINS_INT8 ops only)",
             "interface": "float32 inputs/outputs (quantize/dequantize inside the model)",
             "representative_set": f"{best[3]} real PTB-XL train ECGs (max |x| < {best[2]} mV) through make_model_input; "
                                   "demographics known/partial/unknown; best of 3 candidate sets by mean |int8-float| "
                                   f"on {len(check_idx)} other train ECGs ({best[0]:.4f})",
             "float_model_bytes": float_path.stat().st_size, "int8_model_bytes": int8_path.stat().st_size}
    version = a.version or time.strftime("2.0.0+%Y%m%d%H%M", time.gmtime())
    kw = dict(out_dir=out, model_file=int8_path.name, gradcam_file=cam_file, model_version=version,
              thresholds=thresholds, operating_points=ops, quantization=quant, training=training,
              metrics_val=metrics, seconds_per_step=export.total_stride(widths, stem_pool) / 100.0, feature_map_shape=fmap_shape)
    mpath = export.write_manifest(**kw)
    golden = export.compute_golden(mpath)
    mpath = export.write_manifest(**kw, golden=golden)
    _say(f"val int8 macro AUC {sq['macro_auc']:.4f} (float {sf['macro_auc']:.4f}); "
         f"MI sens {sq['per_class']['MI']['sensitivity']:.3f} spec {sq['per_class']['MI']['specificity']:.3f}; "
         f"mean |int8-float| {metrics['int8_vs_float']['mean_abs_prob_diff']:.4f}")
    _say(f"wrote {mpath}")
    return mpath


def cmd_evaluate(a) -> dict:
    from training.data import load_dataset, to_model_inputs
    from training.evaluate import find_manifest, run_tflite, summarize
    model_path = Path(a.model)
    if not model_path.exists():
        raise SystemExit(f"error: model {model_path} not found")
    manifest, mpath = find_manifest(model_path)
    thresholds = None if manifest is None else {k: float(v) for k, v in manifest["thresholds"].items()}
    ds = load_dataset(Path(a.data), splits=(a.split,))
    ecg, demo = to_model_inputs(ds)
    if a.no_demographics:
        demo = np.zeros_like(demo)
    t0 = time.time()
    P = run_tflite(model_path, ecg, demo, num_threads=a.threads)
    res = summarize(ds.y, P, thresholds)
    from training.metrics import reliability
    for k, c in enumerate(res["per_class"]):
        rel = reliability(ds.y[:, k], P[:, k])
        res["per_class"][c].update({"ece": rel["ece"], "brier": rel["brier"]})
    flat = {"model": str(model_path), "data": str(a.data), "split": a.split, "demographics": not a.no_demographics,
            "runtime": "LiteRT (edge_app.inference)", "manifest": str(mpath) if mpath else None,
            "macro_auc": res["macro_auc"], "n": res["n"], "seconds": round(time.time() - t0, 2)}
    flat.update({c: res["per_class"][c] for c in res["per_class"]})
    flat["per_class"] = res["per_class"]
    if a.json:
        print(json.dumps(flat))
    else:
        print(f"{model_path.name} on {a.split} (n={res['n']}, demographics {'off' if a.no_demographics else 'on'}): "
              f"macro AUC {res['macro_auc']:.4f}")
        for c, d in res["per_class"].items():
            extra = f" sens {d['sensitivity']:.3f} spec {d['specificity']:.3f} @ {d['threshold']:.3f}" if "threshold" in d else ""
            print(f"  {c:5s} AUC {d['auc']:.4f}{extra}")
    return flat


def cmd_qat(a) -> dict:
    """QAT vs PTQ for one trained member (training/qat.py runs in a child process under tf_keras)."""
    _quiet_tf()
    import subprocess
    import tensorflow as tf
    from training import export
    from training.evaluate import run_tflite
    from training.metrics import macro_auc
    from training.qat import export_weights
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    run = Path(a.run)
    if not (run / "model.keras").exists():
        raise FileNotFoundError(f"{run}/model.keras not found: train the member first (ecg-train train --run {run})")
    model = tf.keras.models.load_model(run / "model.keras", compile=False)
    tr, trx, trd = _load_split(data, "train", a.limit)
    va, vax, vad = _load_split(data, "val", a.limit)
    rng = np.random.default_rng(0)
    sub = rng.permutation(len(trx))[:min(a.qat_records, len(trx))]
    rep = rng.permutation(len(trx))[:min(a.rep_size, len(trx))]
    rep = rep[np.abs(trx[rep]).max(axis=(1, 2)) < 4.0]
    export_weights(model, run / "qat_weights.npz")
    chk = sub[:8]
    check_p = np.asarray(model({"ecg": trx[chk], "demographics": trd[chk]}, training=False)["probabilities"])
    np.savez(run / "qat_data.npz", train_x=trx[sub], train_d=trd[sub], train_y=tr.y[sub], rep_x=trx[rep], rep_d=trd[rep],
             check_x=trx[chk], check_d=trd[chk], check_p=check_p)
    qat_path, ptq_path = run / "qat_int8.tflite", run / "ptq_int8.tflite"
    _say(f"QAT: fine-tuning {len(sub)} train records x {a.qat_epochs} epoch(s) in a tf_keras child process")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "training.qat", "--weights", str(run / "qat_weights.npz"),
                        "--config", str(run / "train_info.json"), "--data", str(run / "qat_data.npz"),
                        "--out", str(qat_path), "--epochs", str(a.qat_epochs)],
                       cwd=ROOT, env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    if r.returncode != 0:
        raise RuntimeError(f"QAT child process failed with exit code {r.returncode}")
    qat_s = time.time() - t0
    float_path = export.convert(model, run / "member_float32.tflite")
    export.convert(model, ptq_path, trx[rep], trd[rep])
    Pf, Pp, Pq = (run_tflite(p, vax, vad) for p in (float_path, ptq_path, qat_path))
    res = {"member": str(run), "qat_epochs": a.qat_epochs, "qat_records": int(len(sub)), "qat_seconds": qat_s,
           "val_n": int(len(va)), "macro_auc_float": macro_auc(va.y, Pf),
           "ptq": {"macro_auc": macro_auc(va.y, Pp), "mean_abs_dp": float(np.mean(np.abs(Pp - Pf))),
                   "max_abs_dp": float(np.max(np.abs(Pp - Pf))), "bytes": ptq_path.stat().st_size},
           "qat": {"macro_auc": macro_auc(va.y, Pq), "mean_abs_dp": float(np.mean(np.abs(Pq - Pf))),
                   "max_abs_dp": float(np.max(np.abs(Pq - Pf))), "bytes": qat_path.stat().st_size},
           "note": "QAT fine-tunes the weights, so its |dp| is measured against the float model it started from"}
    (run / "qat_vs_ptq.json").write_text(json.dumps(res, indent=1))
    _say(f"val macro AUC float {res['macro_auc_float']:.4f} | PTQ {res['ptq']['macro_auc']:.4f} (mean |dp| "
         f"{res['ptq']['mean_abs_dp']:.4f}) | QAT {res['qat']['macro_auc']:.4f} (mean |dp| {res['qat']['mean_abs_dp']:.4f})")
    return res


def cmd_report(a) -> None:
    from training.report import build_report
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    mpath = Path(a.out) / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"{mpath} not found: run `ecg-train convert` (or `ecg-train all`) first")
    build_report(mpath, Path(a.run), data, progress=_say, n_boot=a.n_boot, limit=a.limit,
                 mi_target=float(a.mi_sensitivity), previous=Path(a.previous) / "manifest.json" if a.previous else None)


def cmd_all(a) -> None:
    """Train every member of the recipe (sequentially, each into <run>/member<k>), combine + calibrate, convert,
    report. --recipe single trains one model with the command-line settings (the 1.0.0 way; used by the tests)."""
    import copy
    from training.recipes import RECIPES
    t0 = time.time()
    _say(f"== ecg-train all ({a.recipe}): train members -> combine + calibrate -> convert -> report ==")
    run = Path(a.run)
    if a.recipe == "single":
        members = [copy.copy(a)]
    else:
        members = []
        for k, over in enumerate(RECIPES[a.recipe]):
            m = copy.copy(a)
            for key, val in over.items():
                setattr(m, key, val)
            members.append(m)
    dirs = []
    for k, m in enumerate(members):
        m.run = str(run / f"member{k}")
        _say(f"-- member {k + 1}/{len(members)} -> {m.run}")
        cmd_train(m)
        dirs.append(m.run)
    a.members = dirs
    cmd_combine(a)
    cmd_convert(a)
    cmd_report(a)
    _say(f"== done in {time.time() - t0:.0f}s ==")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ecg-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, train=False):
        sp.add_argument("--data", default=str(DEFAULT_DATA), help="../shared/data (or a shard-layout dir)")
        sp.add_argument("--run", default=str(DEFAULT_RUN), help="working directory for the Keras model/logs")
        sp.add_argument("--out", default=str(DEFAULT_OUT), help="where the shipped artefacts go")
        sp.add_argument("--limit", type=int, default=None, help="use only the first N records per split (smoke runs)")
        sp.add_argument("--n-boot", type=int, default=1000)
        if train:
            sp.add_argument("--epochs", type=int, default=25)
            sp.add_argument("--seed", type=int, default=1)
            sp.add_argument("--widths", default="", help="comma-separated stage widths, e.g. 32,48,64,96")
            sp.add_argument("--batch-size", type=int, default=0)
            sp.add_argument("--weight-decay", type=float, default=None)
            sp.add_argument("--lr", type=float, default=None)
            sp.add_argument("--patience", type=int, default=None)
            sp.add_argument("--swa-start", type=int, default=None, help="average weights from this epoch on (SWA)")
            sp.add_argument("--stem-pool", action="store_true", help="pool after the stem (half the compute, coarser CAM)")
            sp.add_argument("--se", action="store_true", help="squeeze-excitation in every residual block")
            sp.add_argument("--kernel", type=int, default=None, help="kernel size of the first two stages (default 7)")
            sp.add_argument("--crop", type=int, default=None, help="train on random crops of N samples (e.g. 250 = 2.5 s)")
            sp.add_argument("--eval-every", type=int, default=None, help="score val every k epochs")
            sp.add_argument("--threads", type=int, default=None, help="TensorFlow threads (0 = all cores)")
            sp.add_argument("--label-smoothing", type=float, default=None)
            sp.add_argument("--class-weighting", choices=("sqrt", "none"), default=None)
        sp.add_argument("--rep-size", type=int, default=300)
        sp.add_argument("--mi-sensitivity", type=float, default=0.91,
                        help="MI threshold: the highest with this sensitivity on the val fitting half")
        sp.add_argument("--no-calibration", action="store_true", help="skip Platt scaling (combine)")
        sp.add_argument("--previous", default="", help="report: directory of the previous model's bundle to compare "
                        "with (default: <out>/previous/<version>/)")
        sp.add_argument("--version", default="")
    al = sub.add_parser("all", help="reproduce everything")
    common(al, train=True)
    al.add_argument("--recipe", default="model2", help="members to train: a name in training/recipes.py, or 'single' "
                    "(one model from the command-line settings)")
    qa = sub.add_parser("qat", help="quantization-aware fine-tuning of one member, compared with PTQ")
    common(qa)
    qa.add_argument("--qat-epochs", type=int, default=1)
    qa.add_argument("--qat-records", type=int, default=4000)
    cb = sub.add_parser("combine", help="members -> one calibrated model (Platt on the val fitting half)")
    common(cb)
    cb.add_argument("--members", nargs="+", required=True, help="trained run directories (each with model.keras)")
    common(sub.add_parser("train", help="train only"), train=True)
    common(sub.add_parser("convert", help="TFLite int8 + manifest from a run"))
    common(sub.add_parser("report", help="evaluation report + model card"))
    ev = sub.add_parser("evaluate", help="evaluate a .tflite via LiteRT on a shard-layout dir")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True, help="shard-layout dir (shards + manifest.json + labels.csv) "
                    "or the official PhysioNet PTB-XL layout (ptbxl_database.csv)")
    ev.add_argument("--split", default="val")
    ev.add_argument("--no-demographics", action="store_true", help="feed 'unknown' age and sex")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        {"all": cmd_all, "train": cmd_train, "combine": cmd_combine, "qat": cmd_qat, "convert": cmd_convert, "evaluate": cmd_evaluate, "report": cmd_report}[a.cmd](a)
    except Exception as e:  # DataError/ModelError: clear message, non-zero exit
        from training.data import DataError
        from edge_app.inference.model import ModelError
        from training.report import ReportError
        if isinstance(e, (DataError, ModelError, ReportError, FileNotFoundError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
