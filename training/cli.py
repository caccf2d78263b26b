"""ecg-train: reproduce the shipped model from ../shared/data on a CPU.

  ecg-train all        data -> train -> convert (float + int8) -> thresholds -> manifest + golden -> report
  ecg-train train      train only (Keras model into the run directory)
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
    np.savez(run / "val_probs.npz", float=Pf, int8=Pq, y=va.y, ecg_id=va.ecg_id)
    thresholds, ops = {}, {}
    for k, c in enumerate(CLASSES):
        y, p = va.y[:, k], Pq[:, k]
        t_sens = threshold_for_sensitivity(y, p, 0.90)
        t_you = threshold_youden(y, p)
        ops[c] = {"youden": binary_stats(y, p, t_you), "sensitivity_0.90": binary_stats(y, p, t_sens)}
        thresholds[c] = t_sens if c == "MI" else t_you
        ops[c]["chosen"] = "sensitivity_0.90" if c == "MI" else "youden"
    sq, sf = summarize(va.y, Pq, thresholds), summarize(va.y, Pf, thresholds)
    metrics = {"split": "val (PTB-XL strat_fold 9)", "n": sq["n"], "int8": sq, "float": sf,
               "int8_vs_float": {"macro_auc_diff": sq["macro_auc"] - sf["macro_auc"],
                                 "mean_abs_prob_diff": float(np.mean(np.abs(Pq - Pf))),
                                 "max_abs_prob_diff": float(np.max(np.abs(Pq - Pf)))}}
    fmap_shape = list(model.get_layer("feature_map").output.shape[1:])
    training = {"data": info.get("data", {}), "split": {"train": "PTB-XL strat_fold 1-8", "val": "strat_fold 9 (selection, thresholds, report)",
                                                         "test": "strat_fold 10 not used (kept aside)"},
                "epochs": info["epochs_run"], "best_epoch": info["best_epoch"], "seconds": info["seconds"],
                "git_commit": info.get("git_commit", "unknown (trained before commits were recorded)"),
                "git_commit_convert": export.git_commit(ROOT), "config": info["config"],
                "params": int(model.count_params())}
    quant = {"type": "full-integer post-training quantization (TFLITE_BUILTINS_INT8 ops only)",
             "interface": "float32 inputs/outputs (quantize/dequantize inside the model)",
             "representative_set": f"{best[3]} real PTB-XL train ECGs (max |x| < {best[2]} mV) through make_model_input; "
                                   "demographics known/partial/unknown; best of 3 candidate sets by mean |int8-float| "
                                   f"on {len(check_idx)} other train ECGs ({best[0]:.4f})",
             "float_model_bytes": float_path.stat().st_size, "int8_model_bytes": int8_path.stat().st_size}
    version = a.version or time.strftime("1.0.0+%Y%m%d%H%M", time.gmtime())
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


def cmd_report(a) -> None:
    from training.report import build_report
    data = Path(a.data) / "ptbxl100" if (Path(a.data) / "ptbxl100").exists() else Path(a.data)
    build_report(Path(a.out) / "manifest.json", Path(a.run), data, progress=_say, n_boot=a.n_boot, limit=a.limit)


def cmd_all(a) -> None:
    t0 = time.time()
    _say("== ecg-train all: train -> convert -> report ==")
    cmd_train(a)
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
        sp.add_argument("--rep-size", type=int, default=300)
        sp.add_argument("--version", default="")
    common(sub.add_parser("all", help="reproduce everything"), train=True)
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
        {"all": cmd_all, "train": cmd_train, "convert": cmd_convert, "evaluate": cmd_evaluate, "report": cmd_report}[a.cmd](a)
    except Exception as e:  # DataError/ModelError: clear message, non-zero exit
        from training.data import DataError
        from edge_app.inference.model import ModelError
        if isinstance(e, (DataError, ModelError, FileNotFoundError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
