"""Issue 14 item 7: a gap (missing samples) is never analysed as signal.

A real PTB-XL 500 Hz record (the built-in demo record 00181, an MI) is written as a WFDB record with
missing samples (WFDB's reserved value, read back as NaN by firmware_bridge.records.read_wfdb_uv):
0.4 s in II and 1.0 s in V2. Before the fix the replay zero-filled them and said
`ABNORMAL ... quality good`; now the window is "cannot interpret" with the missing leads named, and the
model never runs on it. The same holds when the gap lies just outside the window but inside the
resampler's look-ahead (the model input would depend on it), and on the streaming resampler and the
offline one alike.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.signal_chain.conditioning import ConditioningError, StreamingResampler, resample_to_model_rate
from edge_app.signal_chain.quality import ecg_quality
from firmware_bridge.leads import LEADS
from firmware_bridge.records import read_wfdb_uv

wfdb = pytest.importorskip("wfdb")

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "edge_app" / "data" / "records" / "00181_hr"


def _write_with_gaps(tmp: Path, gaps: dict[str, tuple[float, float]], name: str = "gappy", repeat: int = 1) -> Path:
    rec = read_wfdb_uv(RECORD)
    x = np.vstack([rec.leads_uv(LEADS)] * repeat)
    for lead, (t0, t1) in gaps.items():
        x[int(t0 * rec.fs):int(t1 * rec.fs), LEADS.index(lead)] = np.nan
    wfdb.wrsamp(name, fs=rec.fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=x / 1000.0,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp))
    return tmp / name


def _replay(path: Path) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "replay", str(path), "--json"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_record_with_missing_samples_is_cannot_interpret_not_abnormal(tmp_path):
    clean = _replay(RECORD)
    assert clean[0]["quality"] in ("good", "acceptable") and clean[0]["probabilities"] is not None
    path = _write_with_gaps(tmp_path, {"II": (3.0, 3.4), "V2": (6.0, 7.0)})
    rec = read_wfdb_uv(path)
    assert rec.missing_samples == int(0.4 * 500) + int(1.0 * 500)      # the reader keeps them as NaN
    out = _replay(path)
    assert len(out) == 1
    d = out[0]
    print("\nreplay of 00181 with 0.4 s missing in II and 1.0 s in V2:", d["triage"], d["quality"],
          d.get("quality_reasons") or d.get("reasons"))
    assert d["triage"] == "cannot_interpret" and d["quality"] == "unusable"
    assert d["probabilities"] is None                                 # the model never saw the gap
    text = json.dumps(d)
    assert "missing samples" in text and "II" in text and "V2" in text


def test_gap_just_outside_the_window_still_blocks_the_model(tmp_path):
    """The 100 Hz model input near the window's end depends on ~0.18 s of samples after it (the
    resampler's look-ahead). A gap there is not in the native window, but the model would see it."""
    # 20 s (the record twice), windows [0, 10), [5, 15), [10, 20) s; 20 ms missing in V3 at 15.10 s:
    # outside the second window's native samples but inside its model input's look-ahead.
    path = _write_with_gaps(tmp_path, {"V3": (15.10, 15.12)}, "gap_after", repeat=2)
    out = _replay(path)
    assert [d["window_start_s"] for d in out] == [0.0, 5.0, 10.0]
    assert out[0]["probabilities"] is not None                       # clean window: analysed
    for d in out[1:]:
        assert d["triage"] == "cannot_interpret" and d["probabilities"] is None
        assert "missing samples" in json.dumps(d) and "V3" in json.dumps(d)

    from edge_app.pipeline import _quality
    rec = read_wfdb_uv(RECORD)
    x = rec.leads_uv(LEADS)
    rs = StreamingResampler(500, missing="propagate")
    y = np.vstack([rs.process(np.vstack([x, x[:200]])), rs.flush()])
    xx = np.vstack([x, x[:200]]).copy()
    xx[5050:5060, LEADS.index("V3")] = np.nan                         # 0.1-0.12 s after the window's end
    rs2 = StreamingResampler(500, missing="propagate")
    y2 = np.vstack([rs2.process(xx), rs2.flush()])
    assert np.isfinite(y[:1000]).all() and not np.isfinite(y2[:1000]).all()
    assert np.isfinite(xx[:5000]).all()                               # the native window itself is complete
    q_ok = _quality(xx[:5000], 500.0, None, 50, y[:1000])
    q_gap = _quality(xx[:5000], 500.0, None, 50, y2[:1000])
    assert q_ok.verdict != "unusable"
    assert q_gap.verdict == "unusable" and q_gap.leads["V3"].flags == ["missing"]
    assert any("missing samples" in r and "V3" in r for r in q_gap.reasons)


def test_resampler_propagates_missing_samples_streaming_equals_offline():
    rec = read_wfdb_uv(RECORD)
    x = rec.leads_uv(LEADS).copy()
    x[1500:1700, 1] = np.nan
    x[3000:3500, 7] = np.nan
    off = resample_to_model_rate(x, 500, missing="propagate")
    rng = np.random.default_rng(7)
    rs = StreamingResampler(500, missing="propagate")
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 700))
        parts.append(rs.process(x[i:i + n]))
        i += n
    parts.append(rs.flush())
    st = np.vstack(parts)
    assert st.shape == off.shape
    assert np.array_equal(np.isnan(st), np.isnan(off))
    ok = ~np.isnan(off)
    assert np.max(np.abs(st[ok] - off[ok])) <= 1e-6
    bad_rows = np.nonzero(np.isnan(off[:, 1]))[0]
    # only lead II's rows near its gap (3.0-3.4 s = rows 300-340, +- the filter's half-length 0.18 s) are missing
    assert 281 <= bad_rows.min() <= 283 and 357 <= bad_rows.max() <= 359 and len(bad_rows) == np.ptp(bad_rows) + 1
    assert np.isnan(off[:, 7]).sum() > 100
    assert np.isfinite(np.delete(off, [1, 7], axis=1)).all()
    # untouched rows equal the resampling of the complete record where the taps do not reach the gap
    clean = resample_to_model_rate(rec.leads_uv(LEADS), 500)
    assert np.array_equal(off[ok], clean[ok])
    with pytest.raises(ConditioningError, match="propagate"):
        resample_to_model_rate(x, 500)                               # default: NaN is an error


def test_quality_gate_names_missing_leads_and_the_missing_flag():
    x = read_wfdb_uv(RECORD).leads_uv(LEADS).copy()
    x[1000:1200, LEADS.index("II")] = np.nan
    q = ecg_quality(x, 500.0, mains_hz=50)
    assert q.verdict == "unusable" and q.leads["II"].flags == ["missing"]
    assert "no signal (missing samples) on lead II" in q.reasons
    q2 = ecg_quality(read_wfdb_uv(RECORD).leads_uv(LEADS), 500.0, mains_hz=50,
                     missing=np.array([lead == "aVF" for lead in LEADS]))
    assert q2.verdict == "unusable" and "no signal (missing samples) on lead aVF" in q2.reasons
