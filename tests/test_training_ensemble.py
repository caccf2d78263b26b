"""The ensemble is folded into one graph exactly; Platt scaling recovers known parameters; val halves are
patient-disjoint and stable."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "ptbxl100_mini"


def test_fit_platt_recovers_known_slope_and_offset():
    from training.ensemble import fit_platt
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (20000, 5))
    a_true, k_true = np.array([0.5, 1.0, 1.5, 0.8, 2.0]), np.array([-1.0, 0.0, 0.5, -0.3, 1.0])
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-(z * a_true + k_true)))).astype(float)
    p = fit_platt(z, y)
    np.testing.assert_allclose(p.a, a_true, atol=0.08)
    np.testing.assert_allclose(p.k, k_true, atol=0.08)


def test_platt_leaves_a_class_alone_without_enough_labels():
    from training.ensemble import fit_platt
    z = np.random.default_rng(1).normal(0, 1, (50, 5))
    y = np.zeros((50, 5)); y[:25, 0] = 1; y[:2, 1] = 1      # class 1: 2 positives only
    p = fit_platt(z, y)
    assert p.a[1] == 1.0 and p.k[1] == 0.0 and p.a[0] != 1.0


def test_combined_model_is_the_calibrated_mean_of_member_logits_and_cam_is_exact():
    pytest.importorskip("tensorflow")
    from edge_app.inference import gradcam
    from training.ensemble import Platt, combine, member_logits
    from training.model import build_model, head_weights
    m1 = build_model((8, 8, 12, 16), length=None, stem_pool=False, name="a")
    m2 = build_model((8, 12, 12, 16), se=True, length=None, stem_pool=False, name="b")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (4, 1000, 12)).astype(np.float32)
    d = rng.normal(0, 1, (4, 4)).astype(np.float32)
    z = (member_logits(m1, x, d) + member_logits(m2, x, d)) / 2
    pl = Platt(np.array([1.5, 0.5, 1.0, 1.0, 2.0]), np.array([0.1, -0.2, 0.0, 0.3, 0.0]))
    ens = combine([m1, m2], pl)
    out = ens({"ecg": x, "demographics": d})
    np.testing.assert_allclose(np.asarray(out["probabilities"]), pl.apply(z), atol=1e-5)
    hw = head_weights(ens)
    head = gradcam.GradCamHead(W=hw["W"], W_demo=hw["W_demo"], b=hw["b"], demo_W=hw["demo_W"], demo_b=hw["demo_b"],
                               seconds_per_step=0.16, fs_hz=100.0)
    for k in range(len(x)):
        cam = gradcam.class_activation_map(np.asarray(out["feature_map"])[k], head.W)
        np.testing.assert_allclose(gradcam.logits_from_cam(cam, d[k], head), pl.k + pl.a * z[k], atol=1e-4)


def test_val_halves_split_patients_and_are_stable():
    from training.splits import FIT, half_of_patient, patient_ids, val_halves
    rows = list(csv.DictReader(open(MINI / "labels.csv")))
    ids = np.array([int(r["ecg_id"]) for r in rows])
    fit, rep = val_halves(MINI, ids)
    assert (fit ^ rep).all() and fit.any() and rep.any()
    pids = patient_ids(MINI, ids)
    assert not set(pids[fit]) & set(pids[rep])                 # no patient in both halves
    assert pids[0] == int(rows[0]["patient_id"])
    # hash-based, no random state: the same patient always lands in the same half
    assert half_of_patient(15709) == half_of_patient(15709)
    assert {half_of_patient(p) for p in range(200)} == {FIT, "report"}
