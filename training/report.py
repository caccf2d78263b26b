"""Evaluation report + model card, generated from the shipped int8 model run through LiteRT on `val`.

Val (PTB-XL strat_fold 9) was used for model selection. It is split by patient (training/splits.py): the
calibration and every threshold were fitted on the FITTING half; every threshold-, probability- or
calibration-dependent figure here is measured on the REPORTING half, AUC also on all of val. Fold 10 was not used.

If a figure cannot be recomputed (the float model of the run is missing, e.g. on a fresh clone), the figure
from the committed report of the SAME model (same sha256) is kept and marked as carried over; if there is
none, the report refuses (ReportError) before writing anything, so a committed report never degrades to nan.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from edge_app.inference import litert as _litert  # noqa: F401
from edge_app.inference.backend import create_backend
from edge_app.signal_chain.contract import CLASSES, LEADS, demographics_vector, make_model_input
from training.data import demographics_matrix, load_dataset
from training.evaluate import run_tflite, summarize
from training.metrics import (binary_stats, bootstrap_auc, macro_auc, reliability, roc_auc, roc_curve,
                              threshold_for_sensitivity)

AGE_BANDS = [(0, 40), (40, 60), (60, 80), (80, 400)]


class ReportError(RuntimeError):
    """The report cannot be produced from what is present; nothing was written."""


def _f(x, nd=3):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def _bootstrap_ops(Y, P, thr, n_boot=1000, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for k, c in enumerate(CLASSES):
        sens, spec = [], []
        for _ in range(n_boot):
            i = rng.integers(0, len(Y), len(Y))
            s = binary_stats(Y[i, k], P[i, k], thr[c])
            sens.append(s["sensitivity"]); spec.append(s["specificity"])
        out[c] = {"sensitivity_ci": [float(np.nanpercentile(sens, 2.5)), float(np.nanpercentile(sens, 97.5))],
                  "specificity_ci": [float(np.nanpercentile(spec, 2.5)), float(np.nanpercentile(spec, 97.5))]}
    return out


def _perturbed(x_uv: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """Perturb raw microvolt windows BEFORE the contract's signal chain, as the device would receive them."""
    x = x_uv.astype(np.float64)
    n = x.shape[1]
    if kind == "noise":
        return x + rng.normal(0.0, level * 1000.0, x.shape)
    if kind == "wander":
        t = np.arange(n) / 100.0
        f = rng.uniform(0.05, 0.5, (len(x), 1, 1))
        ph = rng.uniform(0, 2 * np.pi, (len(x), 1, 12))
        return x + level * 1000.0 * np.sin(2 * np.pi * f * t[None, :, None] + ph)
    if kind == "scale":
        return x * level
    if kind == "lead_lost":
        x = x.copy()
        x[:, :, int(level)] = 0.0
        return x
    raise ValueError(kind)


def measure_latency(model_path: Path, ecg: np.ndarray, demo: np.ndarray, n: int = 200, threads: int = 1) -> dict:
    """Median/p95 of single inferences on real val ECGs (zeros would flatter the runtime)."""
    be = create_backend("litert")
    be.load(str(model_path), num_threads=threads)
    e = ecg[:1].astype(np.float32)
    d = demo[:1].astype(np.float32)
    for _ in range(10):
        be.run(e, d)
    ts = []
    for k in range(n):
        e, d = ecg[k % len(ecg)][None].astype(np.float32), demo[k % len(demo)][None].astype(np.float32)
        t0 = time.perf_counter(); be.run(e, d); ts.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": float(np.median(ts)), "p95_ms": float(np.percentile(ts, 95)), "n": n, "threads": threads,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "note": "this build box, not a Pi"}


def _subgroup_masks(age: np.ndarray, sex: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for lo, hi in AGE_BANDS:
        out[f"age {lo}-{hi - 1}" if hi < 300 else f"age {lo}+"] = (age >= lo) & (age < hi)
    out["male"], out["female"] = sex == 0, sex == 1
    return out


def _sens_ci(y: np.ndarray, p: np.ndarray, thr: float, n_boot: int, seed: int = 11) -> list[float]:
    """Percentile bootstrap CI of sensitivity (records resampled with replacement within the group)."""
    rng = np.random.default_rng(seed)
    pos = p[y.astype(bool)]
    if len(pos) == 0:
        return [float("nan"), float("nan")]
    s = [float(np.mean(pos[rng.integers(0, len(pos), len(pos))] >= thr)) for _ in range(n_boot)]
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def subgroup_table(Y, P, thr, age, sex, n_boot) -> dict:
    sub = {}
    for name, m in _subgroup_masks(age, sex).items():
        if m.sum() < 20:
            continue
        s = summarize(Y[m], P[m], thr)
        k = CLASSES.index("MI")
        sub[name] = {"n": int(m.sum()), "n_MI": int(Y[m, k].sum()), "macro_auc": s["macro_auc"],
                     "auc": {c: s["per_class"][c]["auc"] for c in CLASSES},
                     "MI_sensitivity": s["per_class"]["MI"]["sensitivity"],
                     "MI_sensitivity_ci95": _sens_ci(Y[m, k], P[m, k], thr["MI"], n_boot),
                     "MI_specificity": s["per_class"]["MI"]["specificity"]}
    return sub


def _carried_over(out: Path, man: dict, key: str) -> dict | None:
    """The figure `key` from the committed report.json, if that report is of the same model (sha256)."""
    p = out / "report.json"
    try:
        old = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if old.get("model_sha256") != man["model_sha256"] or key not in old:
        return None
    v = dict(old[key])
    v["carried_over_from"] = v.get("carried_over_from") or old.get("generated_utc", "unknown")
    return v


def _spec_at_sens(y: np.ndarray, p: np.ndarray, target: float = 0.90) -> dict:
    """A ROC read-off (not an operating point): specificity where sensitivity first reaches `target` on these
    records. Compares two models at EQUAL sensitivity, which thresholds fitted elsewhere cannot guarantee."""
    s = binary_stats(y, p, threshold_for_sensitivity(y, p, target))
    return {"sensitivity": s["sensitivity"], "specificity": s["specificity"], "ppv": s["ppv"]}


def compare_previous(prev_manifest: Path, ecg, demo, Y, fit, rep_mask, mi_target: float) -> dict:
    """The previous shipped model on the same records: its own thresholds, and its MI threshold re-fitted on
    the fitting half exactly as for the new model (a like-for-like operating point)."""
    pm = json.loads(prev_manifest.read_text())
    P = run_tflite(prev_manifest.parent / pm["model_file"], ecg, demo)
    k = CLASSES.index("MI")
    t_fit = threshold_for_sensitivity(Y[fit, k], P[fit, k], mi_target)
    own = {c: float(pm["thresholds"][c]) for c in CLASSES}
    s_own = summarize(Y[rep_mask], P[rep_mask], own)
    return {"MI_spec_at_sens_0.90_roc": _spec_at_sens(Y[:, k], P[:, k]),
            "MI_spec_at_sens_0.90_roc_reporting_half": _spec_at_sens(Y[rep_mask, k], P[rep_mask, k]),
            "model_version": pm["model_version"], "model_file": pm["model_file"], "model_sha256": pm["model_sha256"],
            "model_size_bytes": pm.get("model_size_bytes"), "macro_auc_val_full": macro_auc(Y, P),
            "macro_auc_reporting_half": s_own["macro_auc"],
            "MI_own_threshold": binary_stats(Y[rep_mask, k], P[rep_mask, k], own["MI"]),
            "MI_refitted_threshold": binary_stats(Y[rep_mask, k], P[rep_mask, k], t_fit),
            "ece": {c: reliability(Y[rep_mask, j], P[rep_mask, j])["ece"] for j, c in enumerate(CLASSES)}}


def build_report(manifest_path: Path, run_dir: Path, data_dir: Path, progress=print, n_boot: int = 1000,
                 limit: int | None = None, previous: Path | None = None, mi_target: float = 0.91) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from training.report_render import render_markdown, render_model_card
    from training.splits import val_halves

    out = manifest_path.parent
    man = json.loads(manifest_path.read_text())
    model_path = out / man["model_file"]
    float_candidates = sorted(run_dir.glob("*_float32.tflite"))
    carried = None
    if not float_candidates:
        carried = _carried_over(out, man, "int8_vs_float")
        if carried is None:
            raise ReportError(f"no float model (*_float32.tflite) in {run_dir} and no committed report of this model "
                              f"({man['model_sha256'][:12]}...) to keep the int8-vs-float figures from: run `ecg-train "
                              f"convert --run {run_dir}` (after `ecg-train train`/`all`) first. Nothing was written.")
        progress(f"report: float model not in {run_dir}; keeping int8-vs-float figures of the committed report "
                 f"({carried['carried_over_from']}) for this same model")
    thr = {c: float(man["thresholds"][c]) for c in CLASSES}
    progress(f"report: loading val from {data_dir}")
    va = load_dataset(data_dir, splits=("val",))
    if limit:
        va = va.subset(np.arange(min(limit, len(va))))
    fit, R = val_halves(data_dir, va.ecg_id)
    Yall = va.y
    ecg_all = make_model_input(va.x_uv)
    demo_all = demographics_matrix(va.age, va.sex)
    progress("report: int8 on val via LiteRT")
    Pq_all = run_tflite(model_path, ecg_all, demo_all)
    rep: dict = {"generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "model_file": man["model_file"], "model_sha256": man["model_sha256"], "model_version": man["model_version"],
                 "data": {"split": "val = PTB-XL strat_fold 9", "n_val": int(len(Yall)), "n": int(R.sum()),
                          "n_fitting_half": int(fit.sum()), "prevalence": dict(zip(CLASSES, Yall[R].mean(0).tolist())),
                          "prevalence_fitting_half": dict(zip(CLASSES, Yall[fit].mean(0).tolist())),
                          "note": "val was used for model selection; calibration and thresholds were fitted on the "
                                  "fitting half (patients split by training/splits.py) and all threshold/probability "
                                  "figures are on the other, reporting half; fold 10 was not used"},
                 "runtime": "LiteRT interpreter via edge_app.inference (the device path)"}
    full = summarize(Yall, Pq_all, None)
    ci_full = bootstrap_auc(Yall, Pq_all, n_boot=n_boot)
    full["macro_auc_ci95"] = ci_full["macro"]
    for k, c in enumerate(CLASSES):
        full["per_class"][c]["auc_ci95"] = ci_full["per_class"][k]
    rep["val_full"] = full

    Y, Pq, ecg, demo, x_uv = Yall[R], Pq_all[R], ecg_all[R], demo_all[R], va.x_uv[R]
    age, sex = va.age[R], va.sex[R]
    main = summarize(Y, Pq, thr)
    ci = bootstrap_auc(Y, Pq, n_boot=n_boot)
    for k, c in enumerate(CLASSES):
        main["per_class"][c]["auc_ci95"] = ci["per_class"][k]
    main["macro_auc_ci95"] = ci["macro"]
    bops = _bootstrap_ops(Y, Pq, thr, n_boot=min(n_boot, 500))
    for c in CLASSES:
        main["per_class"][c].update(bops[c])
    rep["int8"] = main
    rep["operating_points"] = man.get("operating_points", {})

    if carried is None:
        Pf_all = run_tflite(float_candidates[0], ecg_all, demo_all)
        fl = summarize(Yall, Pf_all, None)
        rep["float_val_full"] = fl
        rep["int8_vs_float"] = {
            "on": "all of val", "macro_auc_int8": full["macro_auc"], "macro_auc_float": fl["macro_auc"],
            "macro_auc_diff": full["macro_auc"] - fl["macro_auc"],
            "per_class_auc": {c: {"int8": full["per_class"][c]["auc"], "float": fl["per_class"][c]["auc"]} for c in CLASSES},
            "max_abs_prob_diff": float(np.max(np.abs(Pq_all - Pf_all))),
            "mean_abs_prob_diff": float(np.mean(np.abs(Pq_all - Pf_all))),
            "float_model_bytes": float_candidates[0].stat().st_size, "int8_model_bytes": model_path.stat().st_size}
    else:
        rep["int8_vs_float"] = carried

    progress("report: calibration (reporting half)")
    rep["calibration"] = {c: reliability(Y[:, k], Pq[:, k]) for k, c in enumerate(CLASSES)}
    # the ECE a PERFECTLY calibrated model with these very probabilities would show on this many records
    # (labels drawn as Bernoulli(p), 200 draws): the floor below which a measured ECE is sampling noise
    rng_c = np.random.default_rng(5)
    for k, c in enumerate(CLASSES):
        sim = [reliability((rng_c.random(len(Pq)) < Pq[:, k]).astype(float), Pq[:, k])["ece"] for _ in range(200)]
        rep["calibration"][c]["ece_if_perfect_median_p95"] = [float(np.median(sim)), float(np.percentile(sim, 95))]
    rep["calibration_method"] = (man.get("training", {}).get("calibration") or
                                 {"method": "none (probabilities straight from the network)"})

    progress("report: subgroups (age band, sex) with bootstrap CIs")
    rep["subgroups"] = subgroup_table(Y, Pq, thr, age, sex, n_boot)
    # the reporting half holds very few infarcts in some groups (e.g. under 40): also all of val, flagged as
    # including the fitting half (the threshold was fitted there, so slightly optimistic)
    rep["subgroups_val_full"] = subgroup_table(Yall, Pq_all, thr, va.age, va.sex, n_boot)
    k_mi = CLASSES.index("MI")
    rep["MI_spec_at_sens_0.90_roc"] = _spec_at_sens(Yall[:, k_mi], Pq_all[:, k_mi])
    rep["MI_spec_at_sens_0.90_roc_reporting_half"] = _spec_at_sens(Y[:, k_mi], Pq[:, k_mi])

    prev = previous if previous is not None else _find_previous(out, man)
    if prev is not None:
        progress(f"report: previous model {prev} on the same records")
        rep["previous"] = compare_previous(prev, ecg_all, demo_all, Yall, fit, R, mi_target)

    progress("report: with / without / partial demographics")
    dem = {}
    variants = {"age+sex": demo, "none": np.zeros_like(demo),
                "age only": demographics_matrix(age, np.full(len(age), np.nan)),
                "sex only": demographics_matrix(np.full(len(age), np.nan), sex)}
    for name, d in variants.items():
        P = Pq if name == "age+sex" else run_tflite(model_path, ecg, d)
        s = summarize(Y, P, thr)
        dem[name] = {"macro_auc": s["macro_auc"], "auc": {c: s["per_class"][c]["auc"] for c in CLASSES},
                     "MI_sensitivity": s["per_class"]["MI"]["sensitivity"], "MI_specificity": s["per_class"]["MI"]["specificity"]}
    rep["demographics"] = dem

    progress("report: robustness (perturbations applied to raw microvolts before the signal chain)")
    rng = np.random.default_rng(7)
    rob = {"noise_mv": [], "wander_mv": [], "scale": [], "lead_lost": []}
    grid = {"noise_mv": ("noise", [0.0, 0.02, 0.05, 0.1, 0.2]), "wander_mv": ("wander", [0.0, 0.25, 0.5, 1.0, 2.0]),
            "scale": ("scale", [0.5, 0.75, 1.0, 1.25, 1.5, 2.0])}
    for key, (kind, levels) in grid.items():
        for lv in levels:
            P = Pq if (kind != "scale" and lv == 0.0) or (kind == "scale" and lv == 1.0) else \
                run_tflite(model_path, make_model_input(_perturbed(x_uv, kind, lv, rng)), demo)
            s = summarize(Y, P, thr)
            rob[key].append({"level": lv, "macro_auc": s["macro_auc"], "MI_auc": s["per_class"]["MI"]["auc"],
                             "MI_sensitivity": s["per_class"]["MI"]["sensitivity"]})
    for lead in range(12):
        P = run_tflite(model_path, make_model_input(_perturbed(x_uv, "lead_lost", lead, rng)), demo)
        s = summarize(Y, P, thr)
        rob["lead_lost"].append({"lead": LEADS[lead], "macro_auc": s["macro_auc"], "MI_auc": s["per_class"]["MI"]["auc"],
                                 "MI_sensitivity": s["per_class"]["MI"]["sensitivity"]})
    rep["robustness"] = rob
    rep["latency"] = measure_latency(model_path, ecg, demo)
    from edge_app.inference import load_model
    lm = load_model(manifest_path)
    t0 = time.perf_counter()
    n_li = min(20, len(x_uv))
    for k in range(n_li):
        lm.lead_importance(x_uv[k], None, None)
    rep["latency"]["lead_importance_12_leads_ms"] = (time.perf_counter() - t0) * 1000 / n_li
    ood_in = {"flat line (all leads 0)": np.zeros((1, 1000, 12)),
              "Gaussian noise 0.5 mV, no ECG": np.random.default_rng(3).normal(0, 500, (1, 1000, 12))}
    rep["out_of_distribution"] = {k: dict(zip(CLASSES, run_tflite(model_path, make_model_input(v), np.zeros((1, 4), np.float32))[0].round(3).tolist()))
                                  for k, v in ood_in.items()}
    rep["manifest_metrics_val"] = {"thresholds": thr}
    train_info = man.get("training", {})
    rep["training"] = {k: train_info.get(k) for k in ("epochs", "best_epoch", "seconds", "git_commit", "params")}
    rep["training"]["members"] = [{k: m.get(k) for k in ("params", "epochs_run", "seconds", "best_val_macro_auc_float")}
                                  | {"recipe": {k: m["config"].get(k) for k in ("widths", "se", "crop", "epochs", "swa_start")}}
                                  for m in train_info.get("members", [])]
    _plots(rep, Y, Pq, thr, out / "plots", plt)
    md, card = render_markdown(rep, man), render_model_card(rep, man)
    payload = json.dumps(rep, indent=1, default=float)
    import re
    for name, text in (("report.md", md), ("MODEL_CARD.md", card)):
        bad = re.findall(r".{0,40}(?<![A-Za-z])[+-]?nan(?![A-Za-z]).{0,20}", text, flags=re.IGNORECASE)
        if bad:   # a figure that could not be computed must say n/a (or be carried over), never nan
            raise ReportError(f"{name} would contain nan ({bad[0]!r}); nothing was written")
    for name, text in (("report.json", payload), ("report.md", md), ("MODEL_CARD.md", card)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    progress(f"report: wrote {out / 'report.json'}, report.md, MODEL_CARD.md, plots/")
    return rep


def _find_previous(out: Path, man: dict) -> Path | None:
    """quantized_models/previous/<version>/manifest.json of another version (the signed-rollback bundle)."""
    for p in sorted((out / "previous").glob("*/manifest.json")):
        try:
            if json.loads(p.read_text()).get("model_sha256") != man["model_sha256"]:
                return p
        except (OSError, ValueError):
            continue
    return None


def _plots(rep: dict, Y, Pq, thr, pdir: Path, plt) -> None:
    pdir.mkdir(exist_ok=True)
    main = rep["int8"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, c in enumerate(CLASSES):
        fpr, tpr, _ = roc_curve(Y[:, k], Pq[:, k])
        ax.plot(fpr, tpr, label=f"{c} AUC {main['per_class'][c]['auc']:.3f}")
        if c == "MI":
            s = binary_stats(Y[:, k], Pq[:, k], thr[c])
            ax.plot(1 - s["specificity"], s["sensitivity"], "ko", label="MI operating point")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity"); ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC, int8, val reporting half, n={len(Y)}", fontsize=10); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(pdir / "roc.png", dpi=110); plt.close(fig)

    fig, axs = plt.subplots(1, len(CLASSES), figsize=(16, 3.6))
    for ax, c in zip(axs, CLASSES):
        cal = rep["calibration"][c]
        t = cal["table"]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.plot([r["mean_predicted"] for r in t], [r["observed"] for r in t], "o-")
        for r in t:
            ax.annotate(str(r["n"]), (r["mean_predicted"], r["observed"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_title(f"{c}: ECE {cal['ece']:.3f}, Brier {cal['brier']:.3f}", fontsize=9)
        ax.set_xlabel("predicted probability"); ax.set_xlim(0, 1); ax.set_ylim(0, 1)
    axs[0].set_ylabel("observed frequency")
    fig.suptitle("Reliability (int8, val reporting half; numbers = records per bin)"); fig.tight_layout()
    fig.savefig(pdir / "calibration.png", dpi=100); plt.close(fig)

    rob = rep["robustness"]
    fig, axs = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (key, label) in zip(axs, (("noise_mv", "Gaussian noise sigma (mV)"), ("wander_mv", "baseline wander amplitude (mV)"),
                                      ("scale", "amplitude scale"))):
        lv = [r["level"] for r in rob[key]]
        ax.plot(lv, [r["macro_auc"] for r in rob[key]], "o-", label="macro AUC")
        ax.plot(lv, [r["MI_sensitivity"] for r in rob[key]], "s--", label="MI sensitivity @thr")
        ax.set_xlabel(label); ax.set_ylim(0.5, 1.0); ax.grid(alpha=0.3)
    axs[0].legend(fontsize=8)
    ax = axs[3]
    ax.bar(range(12), [r["macro_auc"] for r in rob["lead_lost"]], color="tab:blue")
    ax.axhline(main["macro_auc"], color="k", ls=":", lw=1)
    ax.set_xticks(range(12)); ax.set_xticklabels(LEADS, fontsize=7); ax.set_ylim(0.8, 0.96)
    ax.set_title("one lead lost (macro AUC)", fontsize=9)
    fig.suptitle("Robustness, int8 model, val reporting half"); fig.tight_layout()
    fig.savefig(pdir / "robustness.png", dpi=100); plt.close(fig)
