"""edge_app.signal_chain.dsp gives exactly what scipy.signal gives, without importing scipy.signal.

Issue 17: `import scipy.signal` costs ~80 MB of the daemon's memory. The chain now runs scipy's own
compiled filter kernels loaded directly, with tabulated designs. These tests hold it to bit-identity
with scipy.signal on real records (so the model's inputs, the quality gate's figures and the resampler
cannot move), and check that the device's signal-chain modules really leave scipy.signal unimported.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from edge_app.signal_chain import dsp, dsp_table
from edge_app.signal_chain.contract import make_model_input, remove_baseline
from firmware_bridge.leads import LEADS
from firmware_bridge.records import read_wfdb_uv

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "ptbxl_official_sample"


def _records(n: int = 6) -> list[np.ndarray]:
    paths = sorted(SAMPLE.glob("records500/*/*_hr.hea"))[:n]
    return [read_wfdb_uv(p.with_suffix("")).leads_uv(LEADS) for p in paths]


def test_kernels_are_loaded_without_scipy_signal_package():
    assert dsp.kernels().path == "direct"


def test_every_tabulated_design_equals_scipy_bit_for_bit():
    table = json.loads(dsp.DESIGNS_PATH.read_text())["designs"]
    reqs = dsp_table.table_requests()
    assert len(table) >= len(reqs) >= 60 and all(dsp_table.request_key(k, a) in table for k, a in reqs)
    for kind, args in reqs:
        mine = dsp_table.design_by_name(kind, args)
        ref = dsp_table._compute_fresh(kind, args)
        assert mine.shape == ref.shape and np.array_equal(mine, ref), (kind, args)
    # an untabulated design falls back to scipy.signal and is still right
    assert np.array_equal(dsp.butter_sos(3, (1.0, 30.0), "bandpass", 333.0),
                          sps.butter(3, [1.0, 30.0], btype="bandpass", fs=333.0, output="sos"))


@pytest.mark.parametrize("fs", [500.0, 100.0])
def test_filters_peaks_and_welch_equal_scipy_bit_for_bit(fs):
    step = int(500 // fs)
    for x in _records():
        x = x[::step]
        for sos in (dsp.butter_sos(2, (0.5, 40.0), "bandpass", fs), dsp.butter_sos(2, 0.7, "lowpass", fs),
                    np.vstack([dsp.notch_sos(50.0, 30.0, fs), dsp.butter_sos(2, 0.5, "highpass", fs)])):
            assert np.array_equal(dsp.sosfiltfilt(sos, x, axis=0), sps.sosfiltfilt(sos, x, axis=0))
            zi = dsp.sosfilt_zi(sos)
            assert np.array_equal(zi, sps.sosfilt_zi(sos))
            z0 = zi[:, :, None] * x[0][None, None, :]
            y1, z1 = dsp.sosfilt(sos, x, axis=0, zi=z0)
            y2, z2 = sps.sosfilt(sos, x, axis=0, zi=z0)
            assert np.array_equal(y1, y2) and np.array_equal(z1, z2)
            assert np.array_equal(dsp.sosfilt(sos, x[:, 3]), sps.sosfilt(sos, x[:, 3]))
        b, a = dsp.iirnotch_ba(50.0, 10.0, fs)
        assert np.array_equal(dsp.filtfilt(b, a, x, axis=0), sps.filtfilt(b, a, x, axis=0))
        e = np.abs(x[:, 1])
        for dist in (1, 7, int(0.1 * fs)):
            assert np.array_equal(dsp.find_peaks(e, distance=dist), sps.find_peaks(e, distance=dist)[0])
        for nper in (int(4 * fs), int(2 * fs) + 1, 256):
            f1, p1 = dsp.welch_density(x, fs, nper)
            f2, p2 = sps.welch(x, fs=fs, nperseg=nper, axis=0, detrend=False)
            assert np.array_equal(f1, f2) and np.array_equal(p1, p2)


def test_model_input_is_bit_identical_to_scipy_baseline_removal():
    sos = sps.butter(2, 0.5, btype="highpass", fs=100, output="sos")
    for x in _records():
        w = x[::5][:1000]
        ref = np.clip(sps.sosfiltfilt(sos, w, axis=0) / 1000.0, -10.0, 10.0).astype(np.float32)
        assert np.array_equal(make_model_input(w), ref)
        assert np.array_equal(remove_baseline(w), sps.sosfiltfilt(sos, w, axis=0))


def test_device_signal_chain_does_not_import_scipy_signal():
    code = ("import sys\n"
            "from edge_app.signal_chain import quality, conditioning, contract\n"
            "import numpy as np\n"
            "x = np.random.default_rng(0).normal(0, 100, (5000, 12))\n"
            "quality.ecg_quality(x, 500.0, mains_hz=50)\n"
            "rs = conditioning.StreamingResampler(500.0); rs.process(x); rs.flush()\n"
            "conditioning.StreamingConditioner(500.0).process(x)\n"
            "contract.make_model_input(x[::5])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('scipy.signal', 'scipy.linalg', 'scipy.fft', "
            "'pandas'))))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(eval(r.stdout.strip().splitlines()[-1]))
    kernels = {"scipy.signal._peak_finding_utils", "scipy.signal._sigtools", "scipy.signal._sosfilt"}
    assert loaded <= kernels, f"the device's signal chain imported {sorted(loaded - kernels)}"
