"""Evaluation report + model card, generated from the shipped int8 model run through LiteRT on `val`.

Everything here is measured on PTB-XL strat_fold 9 (`val`), the fold also used for model selection and
thresholds: figures are therefore optimistic for the operating points in particular. Fold 10 was not used.
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
from training.metrics import binary_stats, bootstrap_auc, reliability, roc_auc, roc_curve

AGE_BANDS = [(0, 40), (40, 60), (60, 80), (80, 400)]


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


def build_report(manifest_path: Path, run_dir: Path, data_dir: Path, progress=print, n_boot: int = 1000,
                 limit: int | None = None) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = manifest_path.parent
    man = json.loads(manifest_path.read_text())
    model_path = out / man["model_file"]
    float_candidates = sorted(run_dir.glob("*_float32.tflite"))
    thr = {c: float(man["thresholds"][c]) for c in CLASSES}
    progress(f"report: loading val from {data_dir}")
    va = load_dataset(data_dir, splits=("val",))
    if limit:
        va = va.subset(np.arange(min(limit, len(va))))
    Y = va.y
    ecg = make_model_input(va.x_uv)
    demo = demographics_matrix(va.age, va.sex)
    progress("report: int8 and float on val via LiteRT")
    Pq = run_tflite(model_path, ecg, demo)
    rep: dict = {"generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "model_file": man["model_file"], "model_sha256": man["model_sha256"], "model_version": man["model_version"],
                 "data": {"split": "val = PTB-XL strat_fold 9", "n": int(len(Y)), "prevalence": dict(zip(CLASSES, Y.mean(0).tolist())),
                          "note": "val was also used for model selection and thresholds; fold 10 was not used"},
                 "runtime": "LiteRT interpreter via edge_app.inference (the device path)"}
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

    if float_candidates:
        Pf = run_tflite(float_candidates[0], ecg, demo)
        fl = summarize(Y, Pf, thr)
        rep["float"] = fl
        rep["int8_vs_float"] = {
            "macro_auc_int8": main["macro_auc"], "macro_auc_float": fl["macro_auc"],
            "macro_auc_diff": main["macro_auc"] - fl["macro_auc"],
            "per_class_auc": {c: {"int8": main["per_class"][c]["auc"], "float": fl["per_class"][c]["auc"]} for c in CLASSES},
            "max_abs_prob_diff": float(np.max(np.abs(Pq - Pf))), "mean_abs_prob_diff": float(np.mean(np.abs(Pq - Pf))),
            "float_model_bytes": float_candidates[0].stat().st_size, "int8_model_bytes": model_path.stat().st_size}
    else:
        Pf = None

    progress("report: calibration")
    rep["calibration"] = {c: reliability(Y[:, k], Pq[:, k]) for k, c in enumerate(CLASSES)}

    progress("report: subgroups (age band, sex)")
    sub = {}
    for lo, hi in AGE_BANDS:
        m = (va.age >= lo) & (va.age < hi)
        name = f"age {lo}-{hi - 1}" if hi < 300 else f"age {lo}+"
        if m.sum() >= 20:
            s = summarize(Y[m], Pq[m], thr)
            sub[name] = {"n": int(m.sum()), "macro_auc": s["macro_auc"],
                         "auc": {c: s["per_class"][c]["auc"] for c in CLASSES},
                         "MI_sensitivity": s["per_class"]["MI"]["sensitivity"], "MI_specificity": s["per_class"]["MI"]["specificity"]}
    for code, name in ((0, "male"), (1, "female")):
        m = va.sex == code
        s = summarize(Y[m], Pq[m], thr)
        sub[name] = {"n": int(m.sum()), "macro_auc": s["macro_auc"], "auc": {c: s["per_class"][c]["auc"] for c in CLASSES},
                     "MI_sensitivity": s["per_class"]["MI"]["sensitivity"], "MI_specificity": s["per_class"]["MI"]["specificity"]}
    rep["subgroups"] = sub

    progress("report: with / without / partial demographics")
    dem = {}
    variants = {"age+sex": demo, "none": np.zeros_like(demo),
                "age only": demographics_matrix(va.age, np.full(len(va), np.nan)),
                "sex only": demographics_matrix(np.full(len(va), np.nan), va.sex)}
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
                run_tflite(model_path, make_model_input(_perturbed(va.x_uv, kind, lv, rng)), demo)
            s = summarize(Y, P, thr)
            rob[key].append({"level": lv, "macro_auc": s["macro_auc"], "MI_auc": s["per_class"]["MI"]["auc"],
                             "MI_sensitivity": s["per_class"]["MI"]["sensitivity"]})
    for lead in range(12):
        P = run_tflite(model_path, make_model_input(_perturbed(va.x_uv, "lead_lost", lead, rng)), demo)
        s = summarize(Y, P, thr)
        rob["lead_lost"].append({"lead": LEADS[lead], "macro_auc": s["macro_auc"], "MI_auc": s["per_class"]["MI"]["auc"],
                                 "MI_sensitivity": s["per_class"]["MI"]["sensitivity"]})
    rep["robustness"] = rob
    rep["latency"] = measure_latency(model_path, ecg, demo)
    from edge_app.inference import load_model
    lm = load_model(manifest_path)
    t0 = time.perf_counter()
    for k in range(20):
        lm.lead_importance(va.x_uv[k], None, None)
    rep["latency"]["lead_importance_12_leads_ms"] = (time.perf_counter() - t0) * 1000 / 20
    # out-of-distribution inputs the quality gate must stop: what the model says when it should say nothing
    ood_in = {"flat line (all leads 0)": np.zeros((1, 1000, 12)),
              "Gaussian noise 0.5 mV, no ECG": np.random.default_rng(3).normal(0, 500, (1, 1000, 12))}
    rep["out_of_distribution"] = {k: dict(zip(CLASSES, run_tflite(model_path, make_model_input(v), np.zeros((1, 4), np.float32))[0].round(3).tolist()))
                                  for k, v in ood_in.items()}
    rep["manifest_metrics_val"] = {"thresholds": thr}
    train_info = man.get("training", {})
    rep["training"] = {k: train_info.get(k) for k in ("epochs", "best_epoch", "seconds", "git_commit", "params")}

    progress("report: plots")
    pdir = out / "plots"
    pdir.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, c in enumerate(CLASSES):
        fpr, tpr, _ = roc_curve(Y[:, k], Pq[:, k])
        ax.plot(fpr, tpr, label=f"{c} AUC {main['per_class'][c]['auc']:.3f}")
        if c == "MI":
            s = binary_stats(Y[:, k], Pq[:, k], thr[c])
            ax.plot(1 - s["specificity"], s["sensitivity"], "ko", label="MI operating point")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity"); ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC, int8 model, PTB-XL val (fold 9), n={len(Y)}"); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(pdir / "roc.png", dpi=110); plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in CLASSES:
        t = rep["calibration"][c]["table"]
        ax.plot([r["mean_predicted"] for r in t], [r["observed"] for r in t], "o-", label=f"{c} Brier {rep['calibration'][c]['brier']:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("predicted probability"); ax.set_ylabel("observed frequency")
    ax.set_title("Reliability (int8, val)"); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(pdir / "calibration.png", dpi=110); plt.close(fig)

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
    ax.set_xticks(range(12)); ax.set_xticklabels(LEADS, fontsize=7); ax.set_ylim(0.8, 0.95)
    ax.set_title("one lead lost (macro AUC)", fontsize=9)
    fig.suptitle("Robustness, int8 model, val (fold 9)"); fig.tight_layout()
    fig.savefig(pdir / "robustness.png", dpi=100); plt.close(fig)

    (out / "report.json").write_text(json.dumps(rep, indent=1, default=float))
    (out / "report.md").write_text(render_markdown(rep, man))
    (out / "MODEL_CARD.md").write_text(render_model_card(rep, man))
    progress(f"report: wrote {out / 'report.json'}, report.md, MODEL_CARD.md, plots/")
    return rep


def render_markdown(rep: dict, man: dict) -> str:
    m = rep["int8"]
    L = [f"# Evaluation report: {rep['model_file']} ({rep['model_version']})", "",
         "_Generated by `ecg-train report`; do not edit by hand. Triage aid, not a diagnosis._", "",
         f"Data: {rep['data']['split']}, n = {rep['data']['n']} records. Runtime: {rep['runtime']}.",
         f"**Caveat:** {rep['data']['note']}. Thresholds were chosen on this same fold, so sensitivity/specificity "
         "at the operating points are optimistic; fold 10 will give the independent figures.", "",
         "## Discrimination (int8 model)", "",
         f"Macro AUC **{_f(m['macro_auc'], 4)}** (95 % bootstrap CI {_f(m['macro_auc_ci95'][0])}-{_f(m['macro_auc_ci95'][1])}).", "",
         "| class | n pos | AUC (95 % CI) | threshold | sensitivity (95 % CI) | specificity (95 % CI) | PPV | F1 |",
         "|---|---|---|---|---|---|---|---|"]
    for c in CLASSES:
        d = m["per_class"][c]
        L.append(f"| {c} | {d['n_positive']} | {_f(d['auc'])} ({_f(d['auc_ci95'][0])}-{_f(d['auc_ci95'][1])}) | {_f(d['threshold'])} | "
                 f"{_f(d['sensitivity'])} ({_f(d['sensitivity_ci'][0])}-{_f(d['sensitivity_ci'][1])}) | "
                 f"{_f(d['specificity'])} ({_f(d['specificity_ci'][0])}-{_f(d['specificity_ci'][1])}) | {_f(d['ppv'])} | {_f(d['f1'])} |")
    L += ["", "Operating points: MI threshold = highest threshold with sensitivity >= 0.90 on val (a missed infarct is the "
          "costly error); other classes at the Youden point. Alternatives per class (val):", "",
          "| class | rule | threshold | sensitivity | specificity | PPV |", "|---|---|---|---|---|---|"]
    for c in CLASSES:
        for rule, s in rep["operating_points"].get(c, {}).items():
            if isinstance(s, dict):
                L.append(f"| {c} | {rule} | {_f(s['threshold'])} | {_f(s['sensitivity'])} | {_f(s['specificity'])} | {_f(s['ppv'])} |")
    mi = rep["operating_points"].get("MI", {})
    if "youden" in mi and "sensitivity_0.90" in mi:
        L += ["", f"Cost of the MI sensitivity target: specificity {_f(mi['sensitivity_0.90']['specificity'])} at sensitivity "
              f"{_f(mi['sensitivity_0.90']['sensitivity'])}, versus {_f(mi['youden']['specificity'])} at the Youden point "
              f"(sensitivity {_f(mi['youden']['sensitivity'])})."]
    if "int8_vs_float" in rep:
        q = rep["int8_vs_float"]
        L += ["", "## int8 vs float (both through LiteRT, same val records)", "",
              f"Macro AUC int8 {_f(q['macro_auc_int8'], 4)} vs float {_f(q['macro_auc_float'], 4)} (difference {q['macro_auc_diff']:+.4f}). "
              f"Probability difference: mean {_f(q['mean_abs_prob_diff'], 4)}, max {_f(q['max_abs_prob_diff'], 4)}. "
              f"Size: int8 {q['int8_model_bytes']} bytes, float {q['float_model_bytes']} bytes.", "",
              "| class | AUC int8 | AUC float |", "|---|---|---|"]
        L += [f"| {c} | {_f(v['int8'], 4)} | {_f(v['float'], 4)} |" for c, v in q["per_class_auc"].items()]
    L += ["", "## Calibration (int8)", "", "| class | Brier | ECE |", "|---|---|---|"]
    L += [f"| {c} | {_f(v['brier'])} | {_f(v['ece'])} |" for c, v in rep["calibration"].items()]
    L += ["", "Training used positive-class weights (sqrt(neg/pos)), which pushes probabilities upward for rare "
          "classes; read the probabilities as scores ranked against the thresholds, not as calibrated risks.",
          "", "![calibration](plots/calibration.png)", "",
          "## By age band and sex (int8, manifest thresholds)", "",
          "| group | n | macro AUC | " + " | ".join(f"AUC {c}" for c in CLASSES) + " | MI sens | MI spec |",
          "|---|---|---|" + "---|" * len(CLASSES) + "---|---|"]
    for g, v in rep["subgroups"].items():
        L.append(f"| {g} | {v['n']} | {_f(v['macro_auc'])} | " + " | ".join(_f(v['auc'][c]) for c in CLASSES)
                 + f" | {_f(v['MI_sensitivity'])} | {_f(v['MI_specificity'])} |")
    L += ["", "## With, without and partial demographics", "",
          "| demographics given | macro AUC | " + " | ".join(f"AUC {c}" for c in CLASSES) + " | MI sens | MI spec |",
          "|---|---|" + "---|" * len(CLASSES) + "---|---|"]
    for g, v in rep["demographics"].items():
        L.append(f"| {g} | {_f(v['macro_auc'], 4)} | " + " | ".join(_f(v['auc'][c]) for c in CLASSES)
                 + f" | {_f(v['MI_sensitivity'])} | {_f(v['MI_specificity'])} |")
    r = rep["robustness"]
    L += ["", "## Robustness (perturbation added to the raw microvolt signal, then the device signal chain)", "",
          "Training augmentation covered noise up to 0.05 mV, residual wander up to 0.1 mV after the high-pass, "
          "scale 0.8-1.2 and lost leads (p=0.05), so the larger levels here are beyond what the model saw.", "",
          "| perturbation | level | macro AUC | MI AUC | MI sensitivity |", "|---|---|---|---|---|"]
    for key in ("noise_mv", "wander_mv", "scale"):
        for x in r[key]:
            L.append(f"| {key} | {x['level']} | {_f(x['macro_auc'])} | {_f(x['MI_auc'])} | {_f(x['MI_sensitivity'])} |")
    for x in r["lead_lost"]:
        L.append(f"| lead lost | {x['lead']} | {_f(x['macro_auc'])} | {_f(x['MI_auc'])} | {_f(x['MI_sensitivity'])} |")
    L += ["", "## Out-of-distribution inputs (must be stopped by the quality gate)", "",
          "| input | " + " | ".join(CLASSES) + " |", "|---|" + "---|" * len(CLASSES)]
    L += [f"| {k} | " + " | ".join(_f(p[c], 2) for c in CLASSES) + " |" for k, p in rep.get("out_of_distribution", {}).items()]
    lat = rep["latency"]
    L += ["", "![robustness](plots/robustness.png)", "", "![roc](plots/roc.png)", "",
          "## Cost", "", f"LiteRT int8 inference latency on {lat['machine']} ({lat['note']}), {lat['threads']} thread: "
          f"median {lat['median_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms over {lat['n']} runs; per-lead occlusion importance "
          f"(12 extra inferences + signal chain) {lat.get('lead_importance_12_leads_ms', float('nan')):.1f} ms per strip.", ""]
    t = rep["training"]
    L += [f"Training: {t.get('epochs')} epochs (best {t.get('best_epoch')}), {_f(t.get('seconds') or float('nan'), 0)} s on this 2-core CPU, "
          f"{t.get('params')} parameters, code at commit {t.get('git_commit')}.", ""]
    return "\n".join(L)


def render_model_card(rep: dict, man: dict) -> str:
    m = rep["int8"]
    q = rep.get("int8_vs_float", {})
    mi = m["per_class"]["MI"]
    dem = rep["demographics"]
    worst_lead = min(rep["robustness"]["lead_lost"], key=lambda x: x["macro_auc"])
    noise = {x["level"]: x for x in rep["robustness"]["noise_mv"]}
    subs = rep["subgroups"]
    L = [f"# Model card: {man['model_file']} ({man['model_version']})", "",
         "_Generated by `ecg-train report` from the measured evaluation; do not edit by hand._", "",
         "## Intended use", "",
         "**A triage aid, not a diagnosis.** The model reads a 10 s, 12-lead resting ECG (100 Hz after the device's "
         "signal chain) plus, when known, the patient's age and sex, and returns a probability for each PTB-XL "
         "diagnostic superclass: NORM (normal), MI (myocardial infarction), STTC (ST/T change), CD (conduction "
         "disturbance), HYP (hypertrophy); several can be present. It is meant to prioritise ECGs for review by a "
         "clinician (ambulance crews, remote clinics), with a sensitive MI operating point so that suspected "
         "infarcts are raised loudly. It must not be used to rule out disease, to decide treatment on its own, on "
         "children (PTB-XL has very few), on rhythms/recordings it was not trained for (pacemaker-heavy, "
         "ambulatory/Holter, exercise ECG), or on signals the device's quality gate rejects.", "",
         "## Model", "",
         f"1-D residual CNN (4 stages, strided stem) on the ECG, fused with a small age/sex embedding; "
         f"{rep['training'].get('params')} parameters; full-integer int8 TFLite ({q.get('int8_model_bytes', man.get('model_size_bytes'))} bytes), "
         "float32 interface. Head = global average pooling + one linear layer, so a class activation map over time "
         "(Grad-CAM) is exact and computed on the device with numpy; per-lead importance by occlusion (12 extra "
         "inferences). Input contract: " + man["contract"]["name"] + f" v{man['contract']['version']}.", "",
         "## Data", "",
         "PTB-XL v1.0.3 (Wagner et al., Scientific Data 2020; CC BY 4.0): 10 s 12-lead ECGs from 18,869 patients, "
         "Germany 1989-1996, Schiller devices. Labels: diagnostic SCP statements mapped to 5 superclasses as in the "
         "PTB-XL benchmark (Strodthoff et al. 2020). Training: strat_folds 1-8 (17,418 records). Model selection, "
         "thresholds and every figure below: strat_fold 9 (`val`, 2,183 records). **strat_fold 10 (the benchmark "
         "test fold) was not used at any point**; it is kept aside for an independent check. Folds are "
         "patient-disjoint.", "",
         "## Metrics (val, int8 model through the device runtime)", "",
         f"- Macro AUC **{_f(m['macro_auc'], 4)}** (95 % CI {_f(m['macro_auc_ci95'][0])}-{_f(m['macro_auc_ci95'][1])}). "
         "For orientation only: the published benchmark reports ~0.93 for the best single models on fold 10 "
         "(resnet1d_wang 0.930); our figure is on fold 9 and is not directly comparable.",
         "- Per class AUC: " + ", ".join(f"{c} {_f(m['per_class'][c]['auc'])}" for c in CLASSES) + ".",
         f"- MI at its operating point (threshold {_f(mi['threshold'])}, chosen for sensitivity >= 0.90 on this same fold): "
         f"sensitivity {_f(mi['sensitivity'])}, specificity {_f(mi['specificity'])}, PPV {_f(mi['ppv'])}. "
         "Expect the sensitivity on new data to scatter around 0.90 (the threshold was fitted here).",
         f"- int8 vs float: macro AUC difference {q.get('macro_auc_diff', float('nan')):+.4f}; mean |Δp| "
         f"{_f(q.get('mean_abs_prob_diff'), 4)}, max |Δp| {_f(q.get('max_abs_prob_diff'), 4)}.",
         f"- Demographics: macro AUC with age+sex {_f(dem['age+sex']['macro_auc'], 4)}, none {_f(dem['none']['macro_auc'], 4)}, "
         f"age only {_f(dem['age only']['macro_auc'], 4)}, sex only {_f(dem['sex only']['macro_auc'], 4)}.",
         "- Full tables, CIs, calibration, subgroups and robustness: [report.md](report.md) / report.json.", "",
         "![ROC](plots/roc.png)", "",
         "## Limits", "",
         "- One source population (one German hospital system, 1989-1996, one device family); performance on other "
         "populations, devices and electrode placements is unmeasured.",
         "- Labels are multi-label superclasses from (partly single-cardiologist) report statements; the superclass "
         "split hides important distinctions (e.g. acute STEMI vs old infarct are both MI; PTB-XL is not an acute-care "
         "dataset, so the MI figures are NOT figures for acute STEMI detection in an ambulance).",
         f"- Noise: macro AUC falls to {_f(noise.get(0.2, {}).get('macro_auc'))} at 0.2 mV Gaussian noise; the device's quality "
         f"gate must reject such strips. Losing lead {worst_lead['lead']} costs the most (macro AUC {_f(worst_lead['macro_auc'])}).",
         "- Probabilities are not calibrated risks (positive-class weighting in training); use the thresholds.",
         "- Inputs that are not ECGs still get confident outputs: " + "; ".join(
             f"{k}: " + ", ".join(f"{c} {v:.2f}" for c, v in p.items()) for k, p in rep.get("out_of_distribution", {}).items())
         + ". The device's signal-quality gate must answer \"cannot interpret\" before the model is asked.",
         "- Val is also the selection fold: the reported operating-point figures are optimistic.", "",
         "## Fairness", "",
         "| group | n | macro AUC | MI sensitivity | MI specificity |", "|---|---|---|---|---|"]
    L += [f"| {g} | {v['n']} | {_f(v['macro_auc'])} | {_f(v['MI_sensitivity'])} | {_f(v['MI_specificity'])} |" for g, v in subs.items()]
    weak = [f"{g} ({_f(v['MI_sensitivity'])}, n={v['n']})" for g, v in subs.items() if v["MI_sensitivity"] < 0.9]
    if weak:
        L += ["", "**Weak spots:** at the single MI threshold, MI sensitivity is below the 0.90 target in: " + ", ".join(weak)
              + ". A missed infarct is likelier in these groups; the threshold is global, not per group."]
    gain = dem["age+sex"]["macro_auc"] - dem["none"]["macro_auc"]
    L += ["", f"Age and sex change macro AUC by {gain:+.4f} (with vs without): the model works without them and gains "
          "little from them, so an unknown age costs almost nothing."]
    L += ["", "Age bands with few records have wide uncertainty; differences between groups partly reflect different "
          "disease mixes (e.g. the young band is mostly NORM). Ethnicity is not recorded in PTB-XL, so performance "
          "across ethnic groups is unknown. Sex is recorded as binary in PTB-XL.", "",
          "## Reproduce", "", "`ecg-train all --data ../shared/data` (trains, converts, evaluates and writes this card); "
          f"training took {_f(rep['training'].get('seconds') or float('nan'), 0)} s on a 2-core CPU.", ""]
    return "\n".join(L)
