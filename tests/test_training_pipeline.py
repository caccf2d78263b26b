"""The whole pipeline, small: `ecg-train all` on 60 real PTB-XL records (tiny model, 1 epoch), then the
device loads the int8 result with LiteRT, the self-test passes, and `ecg-train evaluate --json` reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "ptbxl100_mini"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def _cli(*args, timeout=400):
    r = subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True, text=True,
                       cwd=ROOT, env=ENV, timeout=timeout)
    assert r.returncode == 0, f"ecg-train {args[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    out, run = base / "models", base / "run"
    r = _cli("all", "--recipe", "tiny2", "--data", str(MINI), "--run", str(run), "--out", str(out),
             "--n-boot", "20", "--rep-size", "40", "--version", "test-tiny")
    return {"out": out, "run": run, "log": r.stdout}


def test_all_produces_every_artefact(tiny):
    out = tiny["out"]
    for name in ("ecg_resnet1d_demo_int8.tflite", "ecg_resnet1d_demo_int8.gradcam.npz", "manifest.json",
                 "report.json", "report.md", "MODEL_CARD.md", "plots/roc.png", "plots/calibration.png",
                 "plots/robustness.png"):
        assert (out / name).exists(), name
    assert "epoch 1/1" in tiny["log"]                      # progress is shown
    m = json.loads((out / "manifest.json").read_text())
    from edge_app.signal_chain.contract import CLASSES, CONTRACT
    assert m["contract"] == CONTRACT and m["classes"] == list(CLASSES)
    assert set(m["thresholds"]) == set(CLASSES)
    assert len(m["golden"]) == 6 and m["training"]["epochs"] == 2 and len(m["training"]["members"]) == 2
    assert m["quantization"]["type"].startswith("full-integer")
    card = (out / "MODEL_CARD.md").read_text()
    assert "not a diagnosis" in card and "fold 10" in card.lower().replace("strat_fold 10", "fold 10")


def test_int8_model_is_fully_integer(tiny):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(tiny["out"] / "ecg_resnet1d_demo_int8.tflite"))
    ops = {o["op_name"] for o in it._get_ops_details()}
    td = it.get_tensor_details()
    conv_types = {td[o["inputs"][1]]["dtype"].__name__ for o in it._get_ops_details() if o["op_name"] == "CONV_2D"}
    assert conv_types == {"int8"}, conv_types                # weights int8 in every convolution
    assert "QUANTIZE" in ops and "DEQUANTIZE" in ops          # float interface, integer inside


def test_device_loads_tiny_model_and_selftest_passes(tiny):
    from edge_app.inference import load_model, run_selftest
    rep = run_selftest(tiny["out"] / "manifest.json")
    assert rep.ok, rep.error
    assert rep.max_abs_diff <= rep.tolerance
    model = load_model(tiny["out"] / "manifest.json")
    x = np.random.default_rng(0).normal(0, 100, (1000, 12))
    p = model.predict(x, None, None)
    assert set(p.probabilities) == {"NORM", "MI", "STTC", "CD", "HYP"}
    assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
    assert p.cam["MI"].shape == (1000,)


def test_cam_identity_exact_on_float_model(tiny):
    """sum_t CAM/T + demographic term + bias == logit, on the float TFLite (no int8 rounding)."""
    from edge_app.inference import gradcam
    from edge_app.inference.backend import create_backend
    from edge_app.signal_chain.contract import demographics_vector
    head = gradcam.GradCamHead.load(tiny["out"] / "ecg_resnet1d_demo_int8.gradcam.npz")
    be = create_backend("litert")
    be.load(str(next(tiny["run"].glob("*_float32.tflite"))))
    rng = np.random.default_rng(1)
    for age, sex in ((70, 0), (None, None), (30, 1)):
        e = rng.normal(0, 0.3, (1, 1000, 12)).astype(np.float32)
        d = demographics_vector(age, sex)[None]
        out = be.run(e, d)
        p = np.clip(out["probabilities"][0].astype(np.float64), 1e-7, 1 - 1e-7)
        logit = np.log(p / (1 - p))
        cam = gradcam.class_activation_map(out["feature_map"], head.W)
        np.testing.assert_allclose(gradcam.logits_from_cam(cam, d, head), logit, atol=2e-3)


def test_evaluate_cli_json_contract(tiny):
    model = tiny["out"] / "ecg_resnet1d_demo_int8.tflite"
    for extra in ([], ["--no-demographics"]):
        r = _cli("evaluate", "--model", str(model), "--data", str(MINI), "--split", "val", "--json", *extra, timeout=120)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["n"] == 20 and 0.0 <= res["macro_auc"] <= 1.0
        assert res["demographics"] is (not extra)
        for c in ("NORM", "MI", "STTC", "CD", "HYP"):
            for k in ("auc", "sensitivity", "specificity", "ece", "brier"):
                assert k in res[c] and k in res["per_class"][c]


def test_evaluate_cli_clear_error_on_bad_data(tiny, tmp_path):
    r = subprocess.run([sys.executable, "-m", "training.cli", "evaluate", "--model",
                        str(tiny["out"] / "ecg_resnet1d_demo_int8.tflite"), "--data", str(tmp_path), "--json"],
                       capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    assert r.returncode == 2 and "manifest.json" in r.stderr


def test_evaluate_cli_on_official_physionet_layout(tiny):
    official = ROOT / "tests" / "fixtures" / "ptbxl_official_sample"
    r = _cli("evaluate", "--model", str(tiny["out"] / "ecg_resnet1d_demo_int8.tflite"), "--data", str(official),
             "--split", "train", "--json", timeout=120)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    import pandas as pd
    db = pd.read_csv(official / "ptbxl_database.csv")
    assert res["n"] == int((db["strat_fold"] <= 8).sum())
    assert 0.0 <= res["macro_auc"] <= 1.0


def _report_files(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("report.json", "report.md", "MODEL_CARD.md")}


def test_report_keeps_float_figures_it_cannot_recompute(tiny, tmp_path):
    """Issue 14 item 12: on a fresh clone the run directory (git-ignored) has no float model. The report must
    keep the committed int8-vs-float figures of the SAME model, say so, and never write nan."""
    import shutil
    out = tmp_path / "models"
    shutil.copytree(tiny["out"], out)
    before = json.loads((out / "report.json").read_text())["int8_vs_float"]
    empty_run = tmp_path / "fresh_clone_run"
    empty_run.mkdir()
    r = _cli("report", "--data", str(MINI), "--run", str(empty_run), "--out", str(out), "--n-boot", "20")
    assert "keeping int8-vs-float figures" in r.stdout
    after = json.loads((out / "report.json").read_text())["int8_vs_float"]
    assert after["carried_over_from"] and after["mean_abs_prob_diff"] == before["mean_abs_prob_diff"]
    md, card = (out / "report.md").read_text(), (out / "MODEL_CARD.md").read_text()
    assert "Carried over from the report of" in md and "carried over from" in card
    import re
    for text in (md, card):
        assert not re.search(r"(?<![A-Za-z])[+-]?nan(?![A-Za-z])", text, flags=re.IGNORECASE)


def test_report_refuses_and_writes_nothing_without_float_model(tiny, tmp_path):
    import shutil
    out = tmp_path / "models"
    shutil.copytree(tiny["out"], out)
    # the committed report is of ANOTHER model: nothing to keep the float figures from
    rj = json.loads((out / "report.json").read_text())
    rj["model_sha256"] = "0" * 64
    (out / "report.json").write_text(json.dumps(rj))
    before = _report_files(out)
    empty_run = tmp_path / "fresh_clone_run"
    empty_run.mkdir()
    r = subprocess.run([sys.executable, "-m", "training.cli", "report", "--data", str(MINI), "--run", str(empty_run),
                        "--out", str(out), "--n-boot", "20"], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no float model" in r.stderr and "ecg-train" in r.stderr and "Nothing was written" in r.stderr
    assert "Traceback" not in r.stderr
    assert _report_files(out) == before


def test_ensemble_members_and_calibration_in_manifest(tiny):
    m = json.loads((tiny["out"] / "manifest.json").read_text())
    members = m["training"]["members"]
    assert [x["config"]["se"] for x in members] == [False, True]
    assert all(x["config"]["crop"] == 250 for x in members)
    assert "fitting half" in m["training"]["calibration"]["fitted_on"]
    # thresholds fitted on one half, figures on the other: the manifest says which
    assert "reporting half" in m["metrics_val"]["split"]
    assert m["operating_points"]["MI"]["fitted_on"] == "val fitting half"
    # the feature map is the members' maps side by side (Grad-CAM head matches it)
    from edge_app.inference import gradcam
    head = gradcam.GradCamHead.load(tiny["out"] / m["gradcam"]["file"])
    assert head.W.shape[0] == m["signature"]["outputs"]["feature_map"]["shape"][-1] == 16 + 16


def test_qat_path_runs_and_is_compared_with_ptq(tiny):
    """QAT (tfmot under tf_keras, Conv2D (1,k) rebuild) on a tiny member: the rebuilt model reproduces the
    trained one, fine-tunes, converts to a full-integer model with the device signature, and is reported
    against PTQ."""
    member = tiny["run"] / "member1"          # the squeeze-excitation member (Multiply gets its own fake-quant)
    r = _cli("qat", "--data", str(MINI), "--run", str(member), "--rep-size", "40", "--qat-records", "40", timeout=600)
    assert "max |p - p_keras3|" in r.stdout
    res = json.loads((member / "qat_vs_ptq.json").read_text())
    for k in ("ptq", "qat"):
        assert 0.0 <= res[k]["macro_auc"] <= 1.0 and res[k]["mean_abs_dp"] >= 0.0
    from edge_app.inference.backend import create_backend
    be = create_backend("litert")
    be.load(str(member / "qat_int8.tflite"))
    assert set(be.input_names) == {"ecg", "demographics"} and {"probabilities", "feature_map"} <= set(be.output_names)
    out = be.run(np.zeros((1, 1000, 12), np.float32), np.zeros((1, 4), np.float32))
    assert out["probabilities"].shape == (1, 5)


def test_evaluate_cli_on_a_test_split_directory(tiny, tmp_path):
    """How the model is measured independently: shards in the shared layout whose labels.csv says split=test
    (fold 10 is never here; the mini fixture relabelled stands in for such a directory)."""
    import shutil
    d = tmp_path / "heldout"
    shutil.copytree(MINI, d)
    lines = (d / "labels.csv").read_text().splitlines()
    head = lines[0].split(",")
    si = head.index("split")
    rows = [l.split(",") for l in lines[1:]]
    for r in rows:
        r[si] = "test"
    (d / "labels.csv").write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    r = _cli("evaluate", "--model", str(tiny["out"] / "ecg_resnet1d_demo_int8.tflite"), "--data", str(d),
             "--split", "test", "--json", timeout=120)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 60 and res["split"] == "test"
    assert all(0.0 <= res[c]["ece"] <= 1.0 for c in ("NORM", "MI", "STTC", "CD", "HYP"))
