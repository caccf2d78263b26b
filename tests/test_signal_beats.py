"""R-peak detection against cardiologists' beat annotations (MIT-BIH), at several rates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from training.beat_eval import BEAT_SYMBOLS, match_beats, score_record
from edge_app.signal_chain.beats import BeatError, ecg_measure, ecg_peaks, ecg_rate

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "mitdb"
MITDB_DEV = ROOT.parent / "shared" / "data" / "mitdb_dev"
if not MITDB_DEV.exists():
    MITDB_DEV = Path("/work/shared/data/mitdb_dev")


def _score(path: Path, fs_out: float | None = None, channel: int = 0):
    rec = wfdb.rdrecord(str(path), channels=[channel])
    ann = wfdb.rdann(str(path), "atr")
    x = rec.p_signal[:, 0] * 1000.0
    fs = float(rec.fs)
    ref = ann.sample
    if fs_out is not None and fs_out != fs:
        x = resample_poly(x, int(fs_out), int(fs))
        ref = np.round(ref * fs_out / fs).astype(np.int64)
        fs = float(fs_out)
    det = ecg_peaks(x, fs)
    return score_record(path.name, ref, ann.symbol, det, fs, x.shape[0])


@pytest.mark.parametrize("name", ["119_excerpt", "208_excerpt"])
@pytest.mark.parametrize("fs_out", [None, 100, 250, 500, 1000])
def test_fixture_excerpt_detects_annotated_beats(name, fs_out):
    s = _score(FIX / name, fs_out)
    assert s.n_ref > 60
    assert s.sensitivity >= 0.98, s
    assert s.ppv >= 0.98, s


def test_match_beats_counts():
    fs = 100.0
    ref = np.array([100, 200, 300, 400])
    det = np.array([105, 190, 290, 310, 600])     # 310 is a duplicate near 300; 600 spurious
    tp, fn, fp = match_beats(ref, det, fs)
    assert (tp, fn, fp) == (3, 1, 2)


def test_beat_symbols_standard():
    assert {"N", "V", "A", "L", "R", "/", "f", "Q"} <= BEAT_SYMBOLS
    assert "+" not in BEAT_SYMBOLS and "~" not in BEAT_SYMBOLS and "|" not in BEAT_SYMBOLS


def test_measure_rate_and_irregularity_on_synthetic_rhythms():
    fs = 500.0
    t = np.arange(int(20 * fs)) / fs
    x = np.zeros_like(t)
    beats = np.arange(0.5, 19.5, 0.8)                # 75 bpm, perfectly regular
    for b in beats:
        x += 1200 * np.exp(-0.5 * ((t - b) / 0.012) ** 2)
    m = ecg_measure(x, fs)
    assert abs(m.heart_rate_bpm - 75.0) < 1.0
    assert m.n_beats == beats.size
    assert m.rr_cv < 0.02 and m.irregular is False
    assert m.qrs_ms is not None and 20 < m.qrs_ms < 150
    rng = np.random.default_rng(1)
    irr = np.cumsum(rng.uniform(0.45, 1.1, 30)) + 0.5
    irr = irr[irr < 19.5]
    y = np.zeros_like(t)
    for b in irr:
        y += 1200 * np.exp(-0.5 * ((t - b) / 0.012) ** 2)
    m2 = ecg_measure(y, fs)
    assert m2.irregular is True and m2.rmssd_ms > 100


def test_rate_helper_and_errors():
    assert ecg_rate(np.array([0, 100, 200]), 100.0) == pytest.approx(60.0)
    assert ecg_rate(np.array([5]), 100.0) is None
    with pytest.raises(BeatError):
        ecg_peaks(np.zeros(100), 500.0)               # too short
    with pytest.raises(BeatError):
        ecg_peaks(np.full(5000, np.nan), 500.0)
    with pytest.raises(BeatError):
        ecg_peaks(np.zeros((10, 10, 3)), 500.0)
    assert ecg_peaks(np.zeros(5000), 500.0).size == 0   # flat line: no beats, no crash


@pytest.mark.skipif(not (MITDB_DEV / "100.hea").exists(),
                    reason="bulk MIT-BIH records not present at ../shared/data/mitdb_dev")
def test_mitdb_dev_sensitivity_and_ppv_over_six_records():
    tp = fn = fp = 0
    for r in ["100", "105", "108", "119", "203", "208"]:
        s = _score(MITDB_DEV / r)
        tp, fn, fp = tp + s.tp, fn + s.fn, fp + s.fp
    se = tp / (tp + fn)
    ppv = tp / (tp + fp)
    assert se >= 0.990, (se, ppv)
    assert ppv >= 0.990, (se, ppv)


def test_twelve_lead_agreement_survives_noise_and_electrode_off():
    """12-lead detection on real PTB-XL 500 Hz records stays on the clean beats when leads go bad."""
    from edge_app.signal_chain import faults as F
    from firmware_bridge.samples import derive_leads
    rng = np.random.default_rng(0)
    tot = np.zeros(3, dtype=int)
    recs = sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea"))[:21]
    for hea in recs:
        x = wfdb.rdrecord(str(hea.with_suffix(""))).p_signal * 1000.0
        ref = ecg_peaks(x, 500.0)
        ch = F.to_channels(x)
        ch[:, 3:5] += rng.normal(size=(x.shape[0], 2)) * 300.0          # V2, V3 very noisy
        cases = [derive_leads(ch), F.electrode_off(x, 500.0, "LA")[0], F.electrode_off(x, 500.0, "V4")[0],
                 F.noise(x, 1000.0, rng), F.flat(x, ("V1", "V5"))]
        for y in cases:
            tot += match_beats(ref, ecg_peaks(y, 500.0), 500.0, 0.05)
    tp, fn, fp = tot
    assert tp / (tp + fn) >= 0.99 and tp / (tp + fp) >= 0.98, tot


def test_same_beats_from_ptbxl_500hz_and_100hz_files():
    """The 42 fixture records at 500 Hz and PTB-XL's own 100 Hz files give the same beats."""
    tot = np.zeros(3, dtype=int)
    for hea in sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea")):
        a = wfdb.rdrecord(str(hea.with_suffix(""))).p_signal * 1000.0
        lr = str(hea.with_suffix("")).replace("records500", "records100").replace("_hr", "_lr")
        b = wfdb.rdrecord(lr).p_signal * 1000.0
        tot += match_beats(ecg_peaks(a, 500.0) / 5.0, ecg_peaks(b, 100.0), 100.0, 0.05)
    tp, fn, fp = tot
    assert tp > 500 and fn <= 2 and fp <= 4, tot


def test_fast_rhythm_not_halved():
    """Time-compressed 2x (real PTB-XL 12-lead beats at up to ~240 bpm; 5 s of signal each): the same
    beats are found, i.e. the T-wave and P-wave rules do not drop true beats of a tachycardia."""
    tot = np.zeros(3, dtype=int)
    for hea in sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea")):
        x = wfdb.rdrecord(str(hea.with_suffix(""))).p_signal * 1000.0
        ref = ecg_peaks(x, 500.0)
        if ref.size < 2 or 60.0 / (np.median(np.diff(ref)) / 500.0) * 2 > 240:
            continue
        tot += match_beats(ref, ecg_peaks(x, 1000.0), 1000.0, 0.05)
    tp, fn, fp = tot
    assert tp > 400 and tp / (tp + fn) >= 0.98 and tp / (tp + fp) >= 0.98, tot


def test_evaluate_tool_on_fixture_excerpts(capsys):
    from training.signal_eval import main
    assert main(["beats", "--data", str(FIX)]) == 0
    out = capsys.readouterr().out
    assert "| 119_excerpt |" in out and "| 208_excerpt |" in out and "**all**" in out
    assert main(["beats", "--data", str(FIX / "nope")]) == 2


@pytest.mark.parametrize("gain", [0.1, 0.2, 5.0])
def test_sudden_amplitude_change_is_followed(gain):
    """Electrode contact or gain changes mid-record: the detector re-learns the signal level."""
    rec = wfdb.rdrecord(str(FIX / "119_excerpt"), channels=[0])
    ann = wfdb.rdann(str(FIX / "119_excerpt"), "atr")
    x = rec.p_signal[:, 0] * 1000.0
    x[x.size // 3:] *= gain
    s = score_record("119", ann.sample, ann.symbol, ecg_peaks(x, 360.0), 360.0, x.size)
    assert s.sensitivity >= 0.97 and s.ppv >= 0.98, s
