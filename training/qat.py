"""Quantization-aware fine-tuning (QAT) of one trained member, to compare with post-training quantization (PTQ).

Why a separate process: tensorflow-model-optimization (tfmot 0.8) works only with legacy Keras 2 (`tf_keras`,
selected by TF_USE_LEGACY_KERAS=1 before TensorFlow is imported) and rejects Conv1D. So this module
  1. rebuilds the member's architecture in tf_keras with Conv2D (1, k) kernels on a (1, T, 12) "image"
     (mathematically the same convolution; layer names as in training/model.py),
  2. copies the trained weights in (exported by the parent process as an .npz, Conv1D (k, cin, cout) ->
     Conv2D (1, k, cin, cout)),
  3. wraps it with tfmot.quantization.keras.quantize_model (fake-quant of weights and activations; the
     squeeze-excitation Multiply, absent from tfmot's registry, gets an output fake-quant of its own),
  4. fine-tunes on the training records with the same loss at a small learning rate and
  5. converts it to a full-integer TFLite file with the device's serving signature (same names, float I/O).
`ecg-train qat --run DIR` drives it; `python -m training.qat` is the child process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def export_weights(model, path: Path) -> None:
    """(parent process, Keras 3) layer name -> weights, for the tf_keras rebuild."""
    arrays = {}
    for layer in model.layers:
        for k, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{k}"] = w
    np.savez(path, **arrays)


def build_conv2d_model(cfg: dict, length: int = 1000):
    """The training/model.py architecture in tf_keras with Conv2D (1, k) kernels; same layer names."""
    import tf_keras as keras
    L = keras.layers
    widths, kernel = cfg["widths"], cfg.get("kernel", 7)
    se, stem_pool = bool(cfg.get("se", False)), bool(cfg.get("stem_pool", False))

    def conv_bn(x, f, k, s, act, name):
        x = L.Conv2D(f, (1, k), strides=(1, s), padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x) if act else x

    def block(x, f, k, s, name):
        sc = x
        y = conv_bn(x, f, k, s, True, f"{name}_a")
        y = conv_bn(y, f, k, 1, False, f"{name}_b")
        if se:
            g = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
            g = L.Dense(max(4, f // 8), activation="relu", name=f"{name}_se_fc1")(g)
            g = L.Dense(f, activation="sigmoid", name=f"{name}_se_fc2")(g)
            y = L.Multiply(name=f"{name}_se_scale")([y, g])
        if s != 1 or sc.shape[-1] != f:
            sc = conv_bn(sc, f, 1, s, False, f"{name}_proj")
        return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([y, sc]))

    ecg = keras.Input((length, 12), name="ecg")
    demo = keras.Input((4,), name="demographics")
    x = L.Reshape((1, length, 12), name="to_2d")(ecg)
    x = conv_bn(x, widths[0], 11, 2, True, "stem")
    if stem_pool:
        x = L.MaxPooling2D((1, 2), padding="same", name="stem_pool")(x)
    for k, w in enumerate(widths):
        x = block(x, w, kernel if k < 2 else 5, 1 if k == 0 else 2, f"stage{k}")
    pooled = L.GlobalAveragePooling2D(name="gap")(x)
    fmap = L.Reshape((x.shape[2], x.shape[3]), name="feature_map")(x)
    e = L.Dense(8, activation="relu", name="demo_embed")(demo)
    h = L.Concatenate(name="concat")([pooled, e])
    logits = L.Dense(5, name="head")(h)
    probs = L.Activation("sigmoid", name="probabilities")(logits)
    return keras.Model({"ecg": ecg, "demographics": demo}, {"probabilities": probs, "feature_map": fmap})


def load_weights(model, npz: Path) -> int:
    """Copy Keras 3 Conv1D/BN/Dense weights by layer name; returns the number of layers filled."""
    z = np.load(npz)
    names = {k.split("/")[0] for k in z.files}
    n = 0
    for layer in model.layers:
        if layer.name not in names:
            continue
        ws = [z[f"{layer.name}/{k}"] for k in range(len(layer.get_weights()))]
        ws = [w[None] if (w.ndim == 3 and "conv" in layer.name) else w for w in ws]
        layer.set_weights(ws)
        n += 1
    return n


def quantize(model):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    q = tfmot.quantization.keras

    class OutputOnly(q.QuantizeConfig):
        """Fake-quantize only the output (for Multiply, which tfmot's default registry lacks)."""
        def get_weights_and_quantizers(self, layer): return []
        def get_activations_and_quantizers(self, layer): return []
        def set_quantize_weights(self, layer, w): pass
        def set_quantize_activations(self, layer, a): pass
        def get_output_quantizers(self, layer):
            return [q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]
        def get_config(self): return {}

    def annotate(layer):
        if isinstance(layer, keras.layers.Multiply):
            return q.quantize_annotate_layer(layer, OutputOnly())
        return q.quantize_annotate_layer(layer) if not isinstance(layer, keras.layers.InputLayer) else layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with q.quantize_scope({"OutputOnly": OutputOnly}):
        return q.quantize_apply(annotated)


def convert_int8(model, out: Path, rep_ecg: np.ndarray, rep_demo: np.ndarray, length: int = 1000) -> Path:
    import tempfile
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, length, 12], tf.float32, name="ecg"),
                                  tf.TensorSpec([1, 4], tf.float32, name="demographics")])
    def serve(ecg, demographics):
        o = model({"ecg": ecg, "demographics": demographics}, training=False)
        return {"probabilities": o["probabilities"], "feature_map": o["feature_map"]}

    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(model, tmp, signatures={"serving_default": serve})
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def rep():
            for k in range(len(rep_ecg)):
                yield {"ecg": rep_ecg[k:k + 1], "demographics": rep_demo[k:k + 1]}
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
        out.write_bytes(conv.convert())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="QAT child process (see module docstring); use `ecg-train qat`.")
    p.add_argument("--weights", required=True)
    p.add_argument("--config", required=True, help="train_info.json of the member")
    p.add_argument("--data", required=True, help="npz with train_x, train_d, train_y, rep_x, rep_d")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        print("error: run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras); `ecg-train qat` does this", file=sys.stderr)
        return 2
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    tf.keras.utils.set_random_seed(1)
    info = json.loads(Path(a.config).read_text())
    cfg = info["config"]
    base = build_conv2d_model(cfg)
    n = load_weights(base, Path(a.weights))
    d = np.load(a.data)
    got = np.asarray(base({"ecg": d["check_x"], "demographics": d["check_d"]}, training=False)["probabilities"])
    diff = float(np.max(np.abs(got - d["check_p"])))
    print(f"qat: rebuilt the member with Conv2D (1,k) in tf_keras, {n} layers' weights copied; max |p - p_keras3| "
          f"{diff:.2e} on {len(got)} records", flush=True)
    if diff > 1e-3:
        print("error: the Conv2D rebuild does not reproduce the trained member", file=sys.stderr)
        return 3
    qm = quantize(base)
    x, dm, y = d["train_x"], d["train_d"], d["train_y"]
    pw = tf.constant(np.asarray(cfg.get("pos_weight") or [1.0] * 5, np.float32))

    def loss(yt, yp):
        yp = tf.clip_by_value(yp, 1e-6, 1 - 1e-6)
        return tf.reduce_mean(-(pw * yt * tf.math.log(yp) + (1 - yt) * tf.math.log(1 - yp)))
    qm.compile(optimizer=tf.keras.optimizers.Adam(a.lr), loss={"probabilities": loss, "feature_map": None})
    t0 = time.time()
    steps = max(1, len(x) // a.batch_size)
    for ep in range(a.epochs):
        perm = np.random.default_rng(ep).permutation(len(x))
        losses = []
        for s in range(steps):
            i = perm[s * a.batch_size:(s + 1) * a.batch_size]
            r = qm.train_on_batch({"ecg": x[i], "demographics": dm[i]}, {"probabilities": y[i]}, return_dict=True)
            losses.append(float(r["loss"]))
            if s % max(1, steps // 20) == 0 or s == steps - 1:
                done = int(20 * (s + 1) / steps)
                print(f"qat epoch {ep + 1}/{a.epochs} [{'#' * done}{'.' * (20 - done)}] {s + 1}/{steps} loss {np.mean(losses):.4f}",
                      flush=True)
    out = convert_int8(qm, Path(a.out), d["rep_x"], d["rep_d"])
    print(f"qat: {a.epochs} epoch(s) in {time.time() - t0:.0f}s -> {out} ({out.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
