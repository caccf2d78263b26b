"""The quality gate on real PTB-XL records streamed through the real front-end simulator (pty +
wire protocol + host driver) with its own injected faults, and faults.py checked against it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from edge_app.signal_chain import faults as F
from edge_app.signal_chain.quality import ecg_quality
from firmware_bridge.driver import FrontEndDriver
from firmware_bridge.simulator import FrontEndSimulator

ROOT = Path(__file__).resolve().parents[1]
RECS = sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea"))[:4]
N = 5000                    # 10 s at 500 Hz


def _stream(rec: Path, faults: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """First 10 s the host receives: (5000, 12) uV and (5000, 9) lead-off flags."""
    sim = FrontEndSimulator(rec.with_suffix(""), fs=500, speed=0, loop=False, faults=faults, seed=1)
    xs, los, n = [], [], 0
    try:
        with FrontEndDriver(sim.start(), rate_hz=500) as drv:
            for b in drv.blocks(0.5):
                if b is None:
                    continue
                assert b.gap_before == 0
                xs.append(b.leads_uv)
                los.append(b.lead_off)
                n += b.n
                if n >= N:
                    break
    finally:
        sim.stop()
    return np.concatenate(xs)[:N], np.concatenate(los)[:N]


@pytest.mark.parametrize("rec", RECS, ids=lambda p: p.name)
def test_gate_on_simulator_faults(rec):
    clean, lo = _stream(rec, [])
    assert not lo.any()
    q = ecg_quality(clean, 500, lead_off=lo)
    assert q.verdict in ("good", "acceptable"), q.reasons
    for spec, word in [("electrode_off:V3@0", "V3 electrode off"), ("electrode_off:LA@0", "LA electrode off"),
                       ("flat@0", "flat line on all leads"), ("saturate@0", None), ("noise:1000@0", "too noisy")]:
        x, lo = _stream(rec, [spec])
        with_flags = ecg_quality(x, 500, lead_off=lo)
        from_signal = ecg_quality(x, 500)
        assert with_flags.verdict == "unusable" and from_signal.verdict == "unusable", (spec, from_signal.reasons)
        if word:
            assert any(word in r for r in with_flags.reasons), (spec, with_flags.reasons)
            assert any(word in r for r in from_signal.reasons), (spec, from_signal.reasons)


def test_faults_module_mirrors_the_simulator():
    """faults.electrode_off gives what the simulator sends (to its 47.7 nV quantisation)."""
    rec = RECS[0]
    raw = wfdb.rdrecord(str(rec.with_suffix(""))).p_signal[:N] * 1000.0
    clean, _ = _stream(rec, [])
    # the replay is the record (PTB-XL's stored derived leads differ from exact derivation by rounding)
    assert np.max(np.abs(clean - raw)) < 2.0
    for e in ("RA", "LL", "V5"):
        sim_x, sim_lo = _stream(rec, [f"electrode_off:{e}@0"])
        mine, my_lo = F.electrode_off(clean, 500.0, e)
        assert np.array_equal(my_lo, sim_lo)
        assert np.max(np.abs(mine - sim_x)) < 0.2, e              # a few ADC LSBs (47.7 nV each)
