"""Several trained members + per-class Platt calibration folded into ONE model with the device's signature.

Why one graph: the device keeps a single .tflite, one manifest entry, one signature ('ecg', 'demographics' ->
'probabilities', 'feature_map') and the exact numpy Grad-CAM. Every member ends in global average pooling and a
linear head, so the mean of the members' logits is itself "GAP over the concatenated feature maps + one linear
layer":

    z_c = 1/n sum_m (mean_t A_m(t) W_m[:, c] + e_m W_dm[:, c] + b_m[c])
        = mean_t [A_1 .. A_n](t) [W_1; ..; W_n][:, c] / n + [e_1 .. e_n] [W_d1; ..; W_dn][:, c] / n + mean_m b_m[c]

and per-class Platt scaling p_c = sigmoid(a_c z_c + k_c) only rescales that linear layer's column c and bias.
So the combined model's 'feature_map' is the concatenation of the members' maps (same time steps), its
'demo_embed' is the members' embeddings side by side, and its 'head' holds the scaled weights:
`training.model.head_weights` and `edge_app.inference.gradcam` work unchanged, and the CAM identity stays exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from edge_app.signal_chain.contract import CLASSES, N_SAMPLES

L = tf.keras.layers


@dataclass
class Platt:
    """Per-class p = sigmoid(a * z + k) on the (mean member) logit z."""
    a: np.ndarray   # (n_classes,)
    k: np.ndarray   # (n_classes,)

    def apply(self, z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(z * self.a + self.k)))

    def to_json(self) -> dict:
        return {c: {"a": float(self.a[i]), "k": float(self.k[i])} for i, c in enumerate(CLASSES)}


def fit_platt(z: np.ndarray, y: np.ndarray, min_count: int = 5) -> Platt:
    """Maximum-likelihood logistic fit of y on z, per class (2 parameters, convex; L-BFGS on the exact NLL)."""
    from scipy.optimize import minimize
    n_cls = z.shape[1]
    a, k = np.ones(n_cls), np.zeros(n_cls)
    for c in range(n_cls):
        zc, t = z[:, c].astype(np.float64), y[:, c].astype(np.float64)
        if min(t.sum(), (1 - t).sum()) < min_count:
            continue   # too few positives or negatives to fit (tiny smoke runs): leave the class as trained

        def nll(w):
            s = w[0] * zc + w[1]
            # log(1 + e^s) - t s, stable for large |s|
            f = np.logaddexp(0.0, s) - t * s
            p = 1.0 / (1.0 + np.exp(-s))
            return f.mean(), np.array([((p - t) * zc).mean(), (p - t).mean()])
        r = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        a[c], k[c] = r.x
    return Platt(a, k)


def logit_model(model: tf.keras.Model) -> tf.keras.Model:
    """The member's pre-sigmoid output (the 'head' layer)."""
    return tf.keras.Model(model.input, model.get_layer("head").output)


def member_logits(model: tf.keras.Model, ecg: np.ndarray, demo: np.ndarray, batch: int = 256) -> np.ndarray:
    lm = logit_model(model)
    out = [np.asarray(lm({"ecg": ecg[s:s + batch], "demographics": demo[s:s + batch]}, training=False))
           for s in range(0, len(ecg), batch)]
    return np.concatenate(out).astype(np.float64)


def _trunk(model: tf.keras.Model, name: str) -> tf.keras.Model:
    """ecg -> feature map of one member, as a nested model (its layer names stay inside its own scope)."""
    inp = model.input["ecg"] if isinstance(model.input, dict) else model.input[0]
    return tf.keras.Model(inp, model.get_layer("feature_map").output, name=name)


def combine(members: list[tf.keras.Model], platt: Platt | None = None, name: str = "ecg_ensemble_demo") -> tf.keras.Model:
    """One Keras model (inputs 'ecg' (1000, 12), 'demographics' (4,)) = calibrated mean of the members' logits."""
    n = len(members)
    ecg = tf.keras.Input((N_SAMPLES, 12), name="ecg", dtype=tf.float32)
    demo = tf.keras.Input((4,), name="demographics", dtype=tf.float32)
    fmaps = [_trunk(m, f"member{i}")(ecg) for i, m in enumerate(members)]
    fmap = L.Concatenate(axis=-1, name="feature_map_concat")(fmaps) if n > 1 else fmaps[0]
    fmap = L.Activation("linear", name="feature_map")(fmap)
    pooled = L.GlobalAveragePooling1D(name="gap")(fmap)
    d_units = [m.get_layer("demo_embed").units for m in members]
    e = L.Dense(sum(d_units), activation="relu", name="demo_embed")(demo)
    h = L.Concatenate(name="concat")([pooled, e])
    logits = L.Dense(len(CLASSES), name="head")(h)
    probs = L.Activation("sigmoid", name="probabilities")(logits)
    out = tf.keras.Model({"ecg": ecg, "demographics": demo}, {"probabilities": probs, "feature_map": fmap}, name=name)

    a = np.ones(len(CLASSES)) if platt is None else platt.a
    k = np.zeros(len(CLASSES)) if platt is None else platt.k
    W_ecg, W_demo, b_sum, dW, db = [], [], np.zeros(len(CLASSES)), [], []
    for m in members:
        W, b = m.get_layer("head").get_weights()
        C = m.get_layer("feature_map").output.shape[-1]
        W_ecg.append(W[:C]); W_demo.append(W[C:]); b_sum += b
        w_e, b_e = m.get_layer("demo_embed").get_weights()
        dW.append(w_e); db.append(b_e)
    W_all = np.concatenate(W_ecg + W_demo, axis=0) * (a / n)[None, :]
    b_all = a * (b_sum / n) + k
    out.get_layer("head").set_weights([W_all.astype(np.float32), b_all.astype(np.float32)])
    out.get_layer("demo_embed").set_weights([np.concatenate(dW, axis=1).astype(np.float32),
                                             np.concatenate(db).astype(np.float32)])
    return out
