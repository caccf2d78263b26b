"""The shipped model as the device uses it: hashes, contract, self-test, tamper refusal, Grad-CAM identity,
lead occlusion, and that the device path never imports TensorFlow."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.inference import ModelError, available_backends, load_model, run_selftest, verify_manifest
from edge_app.inference import gradcam
from edge_app.inference.selftest import RECORDS_DIR, builtin_records, read_record_uv
from edge_app.signal_chain.contract import CLASSES, CONTRACT, ContractError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "quantized_models" / "manifest.json"


@pytest.fixture(scope="module")
def model():
    return load_model(SHIPPED)


@pytest.fixture()
def shipped_copy(tmp_path):
    m = json.loads(SHIPPED.read_text())
    for name in ("manifest.json", m["model_file"], m["gradcam"]["file"]):
        shutil.copy(SHIPPED.parent / name, tmp_path / name)
    return tmp_path, m


def test_shipped_manifest_hash_contract_and_fields():
    m, model_path, cam_path = verify_manifest(SHIPPED)
    assert m["contract"] == CONTRACT and m["classes"] == list(CLASSES)
    for k in ("format_version", "model_version", "created_utc", "signature", "thresholds", "operating_points",
              "quantization", "training", "metrics_val", "golden", "golden_tolerance"):
        assert k in m, k
    assert set(m["signature"]["outputs"]) == {"probabilities", "feature_map"}
    # device budget (issue 15): every shipped model file together <= 1 MB
    assert model_path.stat().st_size + cam_path.stat().st_size <= 1_000_000
    assert all(0.0 < m["thresholds"][c] < 1.0 for c in CLASSES)


def test_previous_model_bundle_stays_installable():
    """1.0.0 is kept, bytes unchanged, as the bundle for an explicit signed rollback: it must still verify,
    load and pass its own self-test on this device code."""
    prev = SHIPPED.parent / "previous" / "1.0.0" / "manifest.json"
    m, _, _ = verify_manifest(prev)
    assert m["model_version"] == "1.0.0"
    assert m["model_sha256"] == "e0e6e351e8a38ed8cf414fe407afd987bad139e647ae8db270b2a1045f9f98a2"
    rep = run_selftest(prev)
    assert rep.ok, rep.error


def test_shipped_selftest_passes():
    rep = run_selftest(SHIPPED)
    assert rep.ok, rep.error
    assert len(rep.records) == 6 and rep.max_abs_diff <= rep.tolerance


def test_tampered_model_refused_on_hash(shipped_copy):
    d, m = shipped_copy
    p = d / m["model_file"]
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01                                      # one flipped bit in the weights
    p.write_bytes(bytes(b))
    with pytest.raises(ModelError, match="sha256"):
        load_model(d / "manifest.json")
    rep = run_selftest(d / "manifest.json")
    assert not rep.ok and "sha256" in rep.error


def test_tampered_gradcam_head_refused(shipped_copy):
    d, m = shipped_copy
    p = d / m["gradcam"]["file"]
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="Grad-CAM head"):
        load_model(d / "manifest.json")


def test_contract_mismatch_refused_and_named(shipped_copy):
    d, m = shipped_copy
    m["contract"] = dict(m["contract"], fs_hz=250)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="fs_hz"):
        load_model(d / "manifest.json")


def test_missing_manifest_and_unknown_backend(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "manifest.json")
    with pytest.raises(ModelError, match="litert"):
        load_model(SHIPPED, backend="coral-not-installed")
    assert "litert" in available_backends()


def test_predict_on_builtin_records(model):
    for r in builtin_records():
        x = read_record_uv(RECORDS_DIR / r["record_100hz"])
        p = model.predict(x, r["age"], r["sex"])
        assert set(p.probabilities) == set(CLASSES)
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
        assert p.positive == {c: p.probabilities[c] >= p.thresholds[c] for c in CLASSES}
        assert all(p.cam[c].shape == (1000,) and np.isfinite(p.cam[c]).all() for c in CLASSES)
        assert p.model_sha256 == model.manifest["model_sha256"] and "not a diagnosis" in p.disclaimer
    with pytest.raises(ContractError):
        model.predict(np.zeros((500, 12)), 60, "male")


def test_gradcam_identity_on_shipped_int8_model(model):
    """mean_t CAM + demographic term + bias reproduces the model's own probability (int8 rounding only)."""
    for r in builtin_records():
        x = read_record_uv(RECORDS_DIR / r["record_100hz"])
        from edge_app.signal_chain.contract import demographics_vector, make_model_input
        e, d = make_model_input(x), demographics_vector(r["age"], r["sex"])
        out = model.run_inputs(e, d)
        cam = gradcam.class_activation_map(out["feature_map"], model.head.W)
        logit = gradcam.logits_from_cam(cam, d, model.head)
        p_cam = 1 / (1 + np.exp(-logit))
        np.testing.assert_allclose(p_cam, out["probabilities"][0], atol=0.03)
    # and the identity is not vacuous: other weights would not reproduce it
    wrong = gradcam.GradCamHead(model.head.W[::-1], model.head.W_demo, model.head.b, model.head.demo_W,
                                model.head.demo_b, model.head.seconds_per_step, model.head.fs_hz)
    p_wrong = 1 / (1 + np.exp(-gradcam.logits_from_cam(gradcam.class_activation_map(out["feature_map"], wrong.W), d, wrong)))
    assert np.max(np.abs(p_wrong - out["probabilities"][0])) > 0.03


def test_lead_importance_by_occlusion(model):
    r = next(r for r in builtin_records() if "MI" in r["superclasses"])
    x = read_record_uv(RECORDS_DIR / r["record_100hz"])
    imp = model.lead_importance(x, r["age"], r["sex"])
    assert set(imp) == set(CLASSES)
    assert all(v.shape == (12,) and np.isfinite(v).all() for v in imp.values())
    assert np.abs(imp["MI"]).max() > 0.05                     # zeroing leads must move the MI logit
    part = model.lead_importance(x, r["age"], r["sex"], leads=(6, 7))
    assert np.isnan(part["MI"][0]) and np.isfinite(part["MI"][6])


def test_device_path_never_imports_tensorflow():
    code = ("import sys, numpy as np\n"
            "from edge_app.inference import load_model, run_selftest\n"
            f"m = load_model({str(SHIPPED)!r})\n"
            "m.predict(np.zeros((1000, 12)), None, None)\n"
            f"assert run_selftest({str(SHIPPED)!r}).ok\n"
            "print('tensorflow' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
