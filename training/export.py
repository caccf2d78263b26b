"""Export: TFLite (float + full-integer int8) with a named serving signature, the Grad-CAM head file,
operating thresholds, golden outputs on the built-in records and the manifest the device verifies."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge_app.signal_chain.contract import CLASSES, CONTRACT, FS_HZ, N_SAMPLES

MANIFEST_FORMAT = 1
#: Max abs probability difference of the self-test's golden outputs. int8 kernels round requantisation
#: differently per CPU: XNNPACK on arm64 NEON (emulated Pi 4 Cortex-A72 and Pi 5 Cortex-A76, tools/targets.sh
#: arm64) differs from x86 by up to 4 output steps (0.0156) on model 2.0.0 with identical inputs; 0.01 made
#: every Pi refuse the shipped model. 0.04 (~10 steps) still catches a wrong or corrupted model (a wrong
#: model differs by tenths).
GOLDEN_TOLERANCE = 0.04


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_commit(repo: Path) -> str:
    try:
        c = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        d = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "training"], capture_output=True, text=True, timeout=10)
        return c.stdout.strip() + ("-dirty" if d.stdout.strip() else "")
    except Exception:
        return "unknown"


def _export_saved_model(model: tf.keras.Model, path: str) -> None:
    """SavedModel with one 'serving_default' endpoint whose outputs are NAMED (Keras 3 ExportArchive: plain
    tf.saved_model.save leaves Keras 3 variables unfrozen and the int8 calibrator fails on READ_VARIABLE)."""
    import keras
    arch = keras.export.ExportArchive()
    arch.track(model)

    def serve(ecg, demographics):
        out = model({"ecg": ecg, "demographics": demographics}, training=False)
        return {"probabilities": out["probabilities"], "feature_map": out["feature_map"]}
    arch.add_endpoint(name="serving_default", fn=serve,
                      input_signature=[tf.TensorSpec([1, N_SAMPLES, 12], tf.float32, name="ecg"),
                                       tf.TensorSpec([1, 4], tf.float32, name="demographics")])
    arch.write_out(path, verbose=False)


def convert(model: tf.keras.Model, out_path: Path, rep_ecg: np.ndarray | None = None,
            rep_demo: np.ndarray | None = None) -> Path:
    """Float TFLite when rep_ecg is None; else full-integer int8 (TFLITE_BUILTINS_INT8 ops, float32 I/O)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        _export_saved_model(model, tmp)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        if rep_ecg is not None:
            def rep():
                for k in range(len(rep_ecg)):
                    yield {"ecg": rep_ecg[k:k + 1].astype(np.float32), "demographics": rep_demo[k:k + 1].astype(np.float32)}
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.float32
            conv.inference_output_type = tf.float32
        data = conv.convert()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    return out_path


def total_stride(widths, stem_pool: bool = False) -> int:
    """Input samples per feature-map step: stem stride 2, optional pool 2, one stride-2 per stage after the first."""
    return 2 * (2 if stem_pool else 1) * 2 ** (len(widths) - 1)


def save_gradcam_head(head: dict, widths, path: Path, stem_pool: bool = False) -> Path:
    np.savez(path, W=head["W"].astype(np.float32), W_demo=head["W_demo"].astype(np.float32),
             b=head["b"].astype(np.float32), demo_W=head["demo_W"].astype(np.float32),
             demo_b=head["demo_b"].astype(np.float32), seconds_per_step=np.float64(total_stride(widths, stem_pool) / FS_HZ),
             fs_hz=np.float64(FS_HZ), classes=np.array(CLASSES))
    return Path(path)


def write_manifest(out_dir: Path, model_file: str, gradcam_file: str, model_version: str, thresholds: dict,
                   operating_points: dict, quantization: dict, training: dict, metrics_val: dict,
                   seconds_per_step: float, feature_map_shape: list[int], golden: list | None = None,
                   name: str = "manifest.json") -> Path:
    m = {
        "format_version": MANIFEST_FORMAT,
        "model_file": model_file,
        "model_sha256": sha256_file(out_dir / model_file),
        "model_size_bytes": (out_dir / model_file).stat().st_size,
        "model_version": model_version,
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": "Triage aid, not a diagnosis. Flags 10 s 12-lead ECGs for clinician review.",
        "contract": CONTRACT,
        "classes": list(CLASSES),
        "signature": {"key": "serving_default",
                      "inputs": {"ecg": {"shape": [1, N_SAMPLES, 12], "dtype": "float32"},
                                 "demographics": {"shape": [1, 4], "dtype": "float32"}},
                      "outputs": {"probabilities": {"shape": [1, len(CLASSES)], "dtype": "float32"},
                                  "feature_map": {"shape": [1] + list(feature_map_shape), "dtype": "float32"}}},
        "gradcam": {"file": gradcam_file, "sha256": sha256_file(out_dir / gradcam_file),
                    "seconds_per_step": seconds_per_step,
                    "method": "CAM_c(t) = sum_k W[k,c] A[t,k]; logit_c = mean_t CAM_c + demo_term_c + b_c"},
        "thresholds": thresholds,
        "operating_points": operating_points,
        "quantization": quantization,
        "training": training,
        "metrics_val": metrics_val,
        "golden": golden or [],
        "golden_tolerance": GOLDEN_TOLERANCE,
    }
    p = out_dir / name
    p.write_text(json.dumps(m, indent=1, default=_json_default))
    return p


def _json_default(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def compute_golden(manifest_path: Path) -> list[dict]:
    """Run the exported model through the DEVICE path (edge_app.inference, LiteRT) on the built-in records."""
    from edge_app.inference.model import load_model
    from edge_app.inference.selftest import RECORDS_DIR, builtin_records, read_record_uv
    model = load_model(manifest_path)
    out = []
    for r in builtin_records():
        x = read_record_uv(RECORDS_DIR / r["record_100hz"])
        p = model.predict(x, r.get("age"), r.get("sex"))
        out.append({"record": r["record_100hz"], "age": r.get("age"), "sex": r.get("sex"),
                    "labels": r.get("superclasses", []), "probabilities": p.probabilities})
    return out
