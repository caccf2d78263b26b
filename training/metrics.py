"""Metrics in numpy (no scikit-learn on the box): ROC AUC, ROC curve, operating points, bootstrap CIs."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; nan when only one class is present."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(p)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_auc(Y: np.ndarray, P: np.ndarray) -> float:
    return float(np.nanmean([roc_auc(Y[:, c], P[:, c]) for c in range(Y.shape[1])]))


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, thresholds descending; predict positive when p >= t."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    distinct = np.r_[np.where(np.diff(ps))[0], len(ps) - 1]
    tp = np.cumsum(ys)[distinct]
    fp = np.cumsum(~ys)[distinct]
    tpr = np.r_[0.0, tp / max(1, ys.sum())]
    fpr = np.r_[0.0, fp / max(1, (~ys).sum())]
    thr = np.r_[np.inf, ps[distinct]]
    return fpr, tpr, thr


def binary_stats(y: np.ndarray, p: np.ndarray, thr: float) -> dict:
    y = np.asarray(y).astype(bool)
    pred = p >= thr
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {"threshold": float(thr), "sensitivity": sens, "specificity": spec, "ppv": ppv, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def threshold_for_sensitivity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Highest threshold whose sensitivity on (y, p) is >= target (the cheapest in specificity)."""
    pos = np.sort(np.asarray(p)[np.asarray(y).astype(bool)])
    if len(pos) == 0:
        return 0.5
    k = int(np.floor((1.0 - target) * len(pos)))      # may miss at most k positives
    return float(pos[k])


def threshold_youden(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, thr = roc_curve(y, p)
    j = np.argmax(tpr - fpr)
    return float(thr[max(j, 1)])


def bootstrap_auc(Y: np.ndarray, P: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Percentile 95 % CIs for per-class and macro AUC, resampling records with replacement."""
    rng = np.random.default_rng(seed)
    n, k = Y.shape
    per = np.full((n_boot, k), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for c in range(k):
            per[b, c] = roc_auc(Y[idx, c], P[idx, c])
    macro = np.nanmean(per, axis=1)
    ci = lambda a: [float(np.nanpercentile(a, 2.5)), float(np.nanpercentile(a, 97.5))]
    return {"per_class": [ci(per[:, c]) for c in range(k)], "macro": ci(macro), "n_boot": n_boot}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Brier score, expected calibration error and the reliability table (equal-width bins)."""
    y = np.asarray(y, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            conf, acc = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(conf - acc)
            table.append({"bin": [float(edges[b]), float(edges[b + 1])], "n": int(m.sum()),
                          "mean_predicted": conf, "observed": acc})
    return {"brier": float(np.mean((p - y) ** 2)), "ece": float(ece), "table": table}
