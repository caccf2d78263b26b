"""Training loop: weighted BCE, device-realistic augmentation, demographics masking, selection on val.

Augmentation acts on the contract-domain input (mV after the 0.5 Hz high-pass) and mimics what the device
sees: amplitude scale (electrode/gain differences), Gaussian noise (EMG/ADC), residual baseline wander
(what survives the high-pass), small time shifts (window start is arbitrary on a stream) and, rarely, one lead
lost (electrode off). Age and sex are each masked with p=0.3 so the model works with partial or no
demographics (the crew often does not know the age).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.metrics import macro_auc, roc_auc
from training.model import build_model

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.02
    widths: tuple[int, ...] = (32, 48, 64, 96)
    kernel: int = 7
    stem_pool: bool = False
    seed: int = 1
    p_age_mask: float = 0.3
    p_sex_mask: float = 0.3
    p_lead_drop: float = 0.05
    noise_mv_max: float = 0.05
    wander_mv_max: float = 0.1
    scale_range: tuple[float, float] = (0.8, 1.2)
    shift_max: int = 50
    patience: int = 25
    swa_start: int = 12         # >0: also average the weights of epochs >= swa_start (SWA) and keep it if val is better
    se: bool = False            # squeeze-excitation in every residual block
    crop: int = 0               # >0: train on random crops of this many samples (model runs on the whole window)
    eval_every: int = 1         # evaluate val every k epochs (and at the last); cheap crop epochs need not be scored
    class_weighting: str = "sqrt"   # "sqrt": positive weight sqrt(neg/pos) per class; "none": plain BCE
    label_smoothing: float = 0.0
    threads: int = 0            # TensorFlow intra-op threads (0 = all cores)
    pos_weight: list[float] = field(default_factory=list)   # filled from train prevalence

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["widths"] = list(self.widths)
        d["scale_range"] = list(self.scale_range)
        return d


def augment(ecg: tf.Tensor, demo: tf.Tensor, cfg: TrainConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Batch augmentation on (b, 1000, 12) mV and (b, 4) contract demographics."""
    b = tf.shape(ecg)[0]
    if cfg.crop:
        # one random crop per record (all leads together), as in the PTB-XL benchmark's training protocol
        start = tf.random.uniform((b,), 0, ecg.shape[1] - cfg.crop + 1, dtype=tf.int32)
        ecg = tf.gather(ecg, start[:, None] + tf.range(cfg.crop)[None, :], batch_dims=1)
    n = ecg.shape[1]
    scale = tf.random.uniform((b, 1, 1), *cfg.scale_range)
    x = ecg * scale
    sigma = tf.random.uniform((b, 1, 1), 0.0, cfg.noise_mv_max) * tf.cast(tf.random.uniform((b, 1, 1)) < 0.5, tf.float32)
    x = x + tf.random.normal(tf.shape(x)) * sigma
    t = tf.range(n, dtype=tf.float32)[None, :, None] / 100.0
    f = tf.random.uniform((b, 1, 1), 0.05, 0.6)
    ph = tf.random.uniform((b, 1, 12), 0.0, 2 * math.pi)
    amp = tf.random.uniform((b, 1, 1), 0.0, cfg.wander_mv_max) * tf.cast(tf.random.uniform((b, 1, 1)) < 0.5, tf.float32)
    x = x + amp * tf.sin(2 * math.pi * f * t + ph)
    if cfg.shift_max and not cfg.crop:
        shift = tf.random.uniform((b,), -cfg.shift_max, cfg.shift_max + 1, dtype=tf.int32)
        x = tf.map_fn(lambda a: tf.roll(a[0], a[1], axis=0), (x, shift), fn_output_signature=tf.float32)
    lead = tf.random.uniform((b,), 0, 12, dtype=tf.int32)
    drop = tf.cast(tf.random.uniform((b,)) < cfg.p_lead_drop, tf.float32)
    x = x * (1.0 - tf.one_hot(lead, 12)[:, None, :] * drop[:, None, None])
    x = tf.clip_by_value(x, -10.0, 10.0)
    keep_age = tf.cast(tf.random.uniform((b, 1)) >= cfg.p_age_mask, tf.float32)
    keep_sex = tf.cast(tf.random.uniform((b, 1)) >= cfg.p_sex_mask, tf.float32)
    demo = demo * tf.concat([keep_age, keep_age, keep_sex, keep_sex], axis=1)
    return x, demo


def _bar(epoch: int, epochs: int, done: int, total: int, loss: float, width: int = 30) -> None:
    """A live progress bar within the epoch on a terminal (redrawn in place); silent when stdout is a file or
    pipe, where the one line per epoch is the progress record."""
    import sys
    if not sys.stdout.isatty() or (done % max(1, total // 50) and done != total):
        return
    n = int(width * done / max(1, total))
    end = "\r" if done < total else "\r" + " " * (width + 60) + "\r"
    sys.stdout.write(f"epoch {epoch}/{epochs} [{'#' * n}{'.' * (width - n)}] {done}/{total} loss {loss:.4f}{end}")
    sys.stdout.flush()


def weighted_bce(pos_weight: np.ndarray, label_smoothing: float = 0.0):
    pw = tf.constant(pos_weight, tf.float32)

    def loss(y_true, y_pred):
        if label_smoothing:
            y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
        p = tf.clip_by_value(y_pred, 1e-6, 1 - 1e-6)
        l = -(pw * y_true * tf.math.log(p) + (1.0 - y_true) * tf.math.log(1.0 - p))
        return tf.reduce_mean(l)
    return loss


def predict_probs(model: tf.keras.Model, ecg: np.ndarray, demo: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for s in range(0, len(ecg), batch):
        r = model({"ecg": ecg[s:s + batch], "demographics": demo[s:s + batch]}, training=False)
        out.append(np.asarray(r["probabilities"]))
    return np.concatenate(out)


def train(train_x: np.ndarray, train_d: np.ndarray, train_y: np.ndarray,
          val_x: np.ndarray, val_d: np.ndarray, val_y: np.ndarray,
          cfg: TrainConfig, out_dir: Path, progress=print) -> tuple[tf.keras.Model, dict]:
    """Train with AdamW + cosine decay; keep the weights of the epoch with the best val macro AUC."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
        except RuntimeError:   # already initialised in this process
            pass
    tf.keras.utils.set_random_seed(cfg.seed)
    prev = train_y.mean(0)
    cfg.pos_weight = ([float(v) for v in np.sqrt((1 - prev) / prev)] if cfg.class_weighting == "sqrt"
                      else [1.0] * train_y.shape[1])
    model = build_model(cfg.widths, cfg.kernel, stem_pool=cfg.stem_pool, se=cfg.se,
                        length=None if cfg.crop else train_x.shape[1])
    steps = int(math.ceil(len(train_x) / cfg.batch_size))
    sched = tf.keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps * cfg.epochs, warmup_target=None)
    opt = tf.keras.optimizers.AdamW(sched, weight_decay=cfg.weight_decay)
    loss_fn = weighted_bce(np.array(cfg.pos_weight), cfg.label_smoothing)

    ds = (tf.data.Dataset.from_tensor_slices((train_x, train_d, train_y))
          .shuffle(len(train_x), seed=cfg.seed, reshuffle_each_iteration=True)
          .batch(cfg.batch_size, drop_remainder=True)
          .map(lambda x, d, y: (*augment(x, d, cfg), y), num_parallel_calls=1)
          .prefetch(2))

    @tf.function(reduce_retracing=True)
    def step(x, d, y):
        with tf.GradientTape() as tape:
            p = model({"ecg": x, "demographics": d}, training=True)["probabilities"]
            l = loss_fn(y, p)
        g = tape.gradient(l, model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        return l

    history, best, best_epoch, best_w = [], -1.0, -1, None
    swa_w, swa_n = None, 0
    t0 = time.time()
    for epoch in range(1, cfg.epochs + 1):
        te = time.time()
        losses = []
        for x, d, y in ds:
            losses.append(float(step(x, d, y)))
            _bar(epoch, cfg.epochs, len(losses), steps, float(np.mean(losses)))
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.time() - te})
            progress(f"epoch {epoch}/{cfg.epochs} loss {np.mean(losses):.4f} {time.time() - te:.0f}s "
                     f"(total {time.time() - t0:.0f}s)")
            if cfg.swa_start and epoch >= cfg.swa_start:
                w = model.get_weights()
                swa_w = w if swa_w is None else [a + (b - a) / (swa_n + 1) for a, b in zip(swa_w, w)]
                swa_n += 1
            continue
        pv = predict_probs(model, val_x, val_d)
        auc = macro_auc(val_y, pv)
        per = [roc_auc(val_y[:, c], pv[:, c]) for c in range(val_y.shape[1])]
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_macro_auc": auc,
                        "val_auc": per, "seconds": time.time() - te})
        mark = ""
        if auc > best:
            best, best_epoch, best_w = auc, epoch, model.get_weights()
            mark = " *"
        progress(f"epoch {epoch}/{cfg.epochs} loss {np.mean(losses):.4f} val macro AUC {auc:.4f} "
                 f"[{' '.join(f'{a:.3f}' for a in per)}] {time.time() - te:.0f}s (total {time.time() - t0:.0f}s){mark}")
        if cfg.swa_start and epoch >= cfg.swa_start:
            w = model.get_weights()
            swa_w = w if swa_w is None else [a + (b - a) / (swa_n + 1) for a, b in zip(swa_w, w)]
            swa_n += 1
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        if epoch - best_epoch >= cfg.patience:
            progress(f"early stop: no val improvement for {cfg.patience} epochs")
            break
    swa_info = None
    if swa_w is not None:
        # BatchNorm moving statistics are averaged along with the weights; re-estimate them on train batches
        model.set_weights(swa_w)
        bn = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]
        for l in bn:
            l.momentum = 0.9
        for k, (x, d, _) in enumerate(ds.take(60)):
            model({"ecg": x, "demographics": d}, training=True)
        for l in bn:
            l.momentum = 0.99
        pv = predict_probs(model, val_x, val_d)
        swa_auc = macro_auc(val_y, pv)
        swa_info = {"epochs_averaged": swa_n, "from_epoch": cfg.swa_start, "val_macro_auc": swa_auc}
        progress(f"SWA of {swa_n} epochs (from {cfg.swa_start}): val macro AUC {swa_auc:.4f} vs best epoch {best:.4f}")
        if swa_auc > best:
            best, best_epoch, best_w = swa_auc, f"swa{cfg.swa_start}-{len(history)}", model.get_weights()
    model.set_weights(best_w)
    info = {"epochs_run": len(history), "best_epoch": best_epoch, "best_val_macro_auc_float": best, "swa": swa_info,
            "seconds": time.time() - t0, "config": cfg.to_json(), "history": history}
    model.save(out_dir / "model.keras")
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    return model, info
