"""The compact 1-D residual CNN + demographics model, built so the class activation map is exact.

Head: feature map A (T', C) of the last residual stage -> GlobalAveragePooling -> concat with a small
demographic embedding e -> ONE linear Dense(5) -> sigmoid. Hence for class c
    logit_c = sum_k W[k,c] * mean_t A[t,k] + sum_j W[C+j,c] * e_j + b_c
and CAM_c(t) = sum_k W[k,c] * A[t,k] averages (over t) exactly to the ECG part of the logit, so the device
computes Grad-CAM with numpy from the exported feature map (no gradients, no TensorFlow).
Early downsampling (strided stem + pooling) keeps the run trainable on a 2-core CPU and the int8 file small.
"""
from __future__ import annotations

import tensorflow as tf

from edge_app.signal_chain.contract import CLASSES, N_SAMPLES

L = tf.keras.layers


def _conv_bn(x, filters: int, kernel: int, stride: int = 1, act: bool = True, name: str = ""):
    x = L.Conv1D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if act else x


def _squeeze_excite(y, filters: int, name: str, ratio: int = 8):
    """Channel attention (Hu et al. 2018): a per-channel gate from the time-averaged activations. Cheap (two
    tiny Dense layers) and int8-friendly (MEAN, FULLY_CONNECTED, LOGISTIC, MUL)."""
    s = L.GlobalAveragePooling1D(keepdims=True, name=f"{name}_se_pool")(y)
    s = L.Dense(max(4, filters // ratio), activation="relu", name=f"{name}_se_fc1")(s)
    s = L.Dense(filters, activation="sigmoid", name=f"{name}_se_fc2")(s)
    return L.Multiply(name=f"{name}_se_scale")([y, s])


def _res_block(x, filters: int, kernel: int, stride: int, name: str, se: bool = False):
    shortcut = x
    y = _conv_bn(x, filters, kernel, stride, True, f"{name}_a")
    y = _conv_bn(y, filters, kernel, 1, False, f"{name}_b")
    if se:
        y = _squeeze_excite(y, filters, name)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = _conv_bn(shortcut, filters, 1, stride, False, f"{name}_proj")
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([y, shortcut]))


def build_model(widths: tuple[int, ...] = (32, 48, 64, 96), kernel: int = 7, demo_units: int = 8,
                dropout: float = 0.2, stem_pool: bool = True, se: bool = False,
                length: int | None = N_SAMPLES, name: str = "ecg_resnet1d_demo") -> tf.keras.Model:
    """widths: channels of the residual stages; stage k>0 halves time; stem_pool halves once more after the
    stride-2 stem (cheaper, coarser CAM); se: squeeze-excitation in every residual block; length None makes the
    model fully convolutional in time (train on random crops, run on the whole 10 s window: the linear head
    after global average pooling then gives the mean of the crop logits, the PTB-XL benchmark's sliding-window
    aggregation in one pass). Returns a Keras model with inputs 'ecg' (length, 12) and 'demographics' (4,),
    outputs 'probabilities' (5,) and 'feature_map' (T', C)."""
    ecg = tf.keras.Input((length, 12), name="ecg", dtype=tf.float32)
    demo = tf.keras.Input((4,), name="demographics", dtype=tf.float32)
    x = _conv_bn(ecg, widths[0], 11, 2, True, "stem")                  # 500
    if stem_pool:
        x = L.MaxPooling1D(2, padding="same", name="stem_pool")(x)        # 250
    for k, w in enumerate(widths):
        x = _res_block(x, w, kernel if k < 2 else 5, 1 if k == 0 else 2, f"stage{k}", se)
    fmap = L.Activation("linear", name="feature_map")(x)                  # (T', C)
    pooled = L.GlobalAveragePooling1D(name="gap")(fmap)
    e = L.Dense(demo_units, activation="relu", name="demo_embed")(demo)
    h = L.Concatenate(name="concat")([pooled, e])
    h = L.Dropout(dropout, name="head_dropout")(h)
    logits = L.Dense(len(CLASSES), name="head")(h)
    probs = L.Activation("sigmoid", name="probabilities")(logits)
    return tf.keras.Model({"ecg": ecg, "demographics": demo}, {"probabilities": probs, "feature_map": fmap},
                          name=name)


def head_weights(model: tf.keras.Model) -> dict:
    """Weights the device needs for the CAM identity: W_ecg (C,5), W_demo (D,5), b (5,), demo embedding."""
    W, b = model.get_layer("head").get_weights()
    Wd, bd = model.get_layer("demo_embed").get_weights()
    C = model.get_layer("feature_map").output.shape[-1]
    return {"W": W[:C], "W_demo": W[C:], "b": b, "demo_W": Wd, "demo_b": bd}
