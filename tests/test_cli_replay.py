"""`ecg-edge replay` contract, and the same findings at 500 Hz as on PTB-XL's own 100 Hz versions.

Runs on the 42 real PTB-XL records of tests/fixtures/ptbxl_official_sample (each stored at 500 Hz and at
100 Hz by PTB-XL itself): both are replayed through exactly the daemon's chain (streaming resampler,
quality gate, model) and the triage levels and positive classes are compared.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "ptbxl_official_sample"
CONTRACT_KEYS = ("record", "window_start_s", "quality", "probabilities", "triage", "model_sha256")


def _replay(paths: list[Path], *extra: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "replay", *map(str, paths), "--json", *extra],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines()]


def _positive(d: dict) -> tuple[str, ...]:
    return tuple(sorted(f["class"] for f in d["findings"]))


def test_replay_500hz_matches_100hz_versions_of_the_same_records():
    hr = sorted(SAMPLE.glob("records500/*/*_hr.hea"))
    lr = sorted(SAMPLE.glob("records100/*/*_lr.hea"))
    assert len(hr) == len(lr) >= 40
    a = {Path(d["record"]).name.split("_")[0]: d for d in _replay(hr)}
    b = {Path(d["record"]).name.split("_")[0]: d for d in _replay(lr)}
    assert a.keys() == b.keys() and len(a) == len(hr)       # one 10 s window per 10 s record
    for d in list(a.values()) + list(b.values()):
        for k in CONTRACT_KEYS:
            assert k in d, (k, d)
        assert d["window_start_s"] == 0.0
        if d["probabilities"] is not None:
            assert set(d["probabilities"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
    same_level = sum(a[k]["triage"] == b[k]["triage"] for k in a)
    same_pos = sum(_positive(a[k]) == _positive(b[k]) for k in a)
    diffs = [max(abs(a[k]["probabilities"][c] - b[k]["probabilities"][c]) for c in a[k]["probabilities"])
             for k in a if a[k]["probabilities"] and b[k]["probabilities"]]
    print(f"\n500 Hz vs 100 Hz on {len(a)} PTB-XL records: same triage level {same_level}/{len(a)}, "
          f"same positive classes {same_pos}/{len(a)}, max |dp| per record: median {np.median(diffs):.4f}, "
          f"p90 {np.percentile(diffs, 90):.4f}, max {max(diffs):.4f} (n={len(diffs)})")
    assert same_level >= 0.9 * len(a)
    assert np.median(diffs) <= 0.05


def test_replay_contract_on_builtin_record_and_patient_context():
    rec = ROOT / "edge_app" / "data" / "records" / "00181_hr"
    out = _replay([rec], "--age", "73", "--sex", "male")
    assert len(out) == 1
    d = out[0]
    assert d["record"] == str(rec) and d["patient"] == {"age": 73.0, "sex": "male"}
    assert len(d["model_sha256"]) == 64 and d["notice"] == "Triage aid, not a diagnosis"


def test_replay_refuses_bad_input_clearly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "replay", str(tmp_path / "nope"), "--json"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no WFDB record" in r.stderr and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "replay", "x", "--sex", "robot"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2


@pytest.mark.parametrize("stride", [2.5])
def test_replay_long_record_slides_windows(tmp_path, stride):
    """A 30 s record (three PTB-XL records back to back, as the daemon would see a long stream)."""
    import wfdb
    from edge_app.pipeline import read_record
    xs = [read_record(ROOT / "edge_app" / "data" / "records" / f"{r}_hr")[0] for r in ("00387", "00062", "00270")]
    x = np.concatenate(xs) / 1000.0
    wfdb.wrsamp("long", fs=500, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2",
                "V3", "V4", "V5", "V6"], p_signal=x, fmt=["16"] * 12, write_dir=str(tmp_path))
    out = _replay([tmp_path / "long"], "--stride", str(stride))
    starts = [d["window_start_s"] for d in out]
    assert starts == [i * stride for i in range(len(starts))] and starts[-1] == 20.0


def test_replay_any_rate_250_and_1000_hz_gives_the_same_findings(tmp_path):
    """The same real record re-sampled to 250 and 1000 Hz (scipy polyphase) is analysed like the 500 Hz one."""
    import wfdb
    from scipy.signal import resample_poly
    from edge_app.pipeline import read_record
    x, fs, _ = read_record(ROOT / "edge_app" / "data" / "records" / "00270_hr")
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    for rate, (up, down) in {250: (1, 2), 1000: (2, 1)}.items():
        y = resample_poly(x, up, down, axis=0) / 1000.0
        wfdb.wrsamp(f"r{rate}", fs=rate, units=["mV"] * 12, sig_name=names, p_signal=y, fmt=["16"] * 12,
                    write_dir=str(tmp_path))
    out = _replay([ROOT / "edge_app" / "data" / "records" / "00270_hr", tmp_path / "r250", tmp_path / "r1000"])
    assert len(out) == 3
    base = out[0]
    for d in out[1:]:
        assert d["triage"] == base["triage"] and _positive(d) == _positive(base)
        assert max(abs(d["probabilities"][c] - base["probabilities"][c]) for c in base["probabilities"]) < 0.1
