"""edge_app.replay (batch replay of a backlog) gives exactly what pipeline.analyse_record gives.

Real parts: the 42 PTB-XL 500 Hz fixture records, a 25 s record (three windows, the last one completed by
the resampler's flush), a record with missing samples, the real LiteRT interpreter on the shipped model.
Everything in a result but its id, time and timings must be equal, including every probability, the
quality gate's per-lead figures and the explanation; the 100 Hz model input and the raw window are
compared bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.config import load_config
from edge_app.inference import load_model
from edge_app.pipeline import Pipeline, PipelineSettings, analyse_record, read_record, record_blocks
from edge_app.replay import analyse_samples, replay_records
from edge_app.results import PatientContext
from firmware_bridge.leads import LEADS

wfdb = pytest.importorskip("wfdb")

ROOT = Path(__file__).resolve().parents[1]
HR = sorted(p.with_suffix("") for p in (ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea"))
VOLATILE = ("id", "time", "timings_ms", "result_id")          # random ids, clocks and stage timings


def _scrub(v):
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


@pytest.fixture(scope="module")
def chain():
    cfg = load_config(None)
    model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    return cfg, model, PipelineSettings.from_config(cfg)


def _stable(r) -> dict:
    return _scrub(r.to_dict())


def _long_records(tmp: Path) -> list[Path]:
    x1, fs, _ = read_record(HR[0])
    x2, _, _ = read_record(HR[1])
    long = np.vstack([x1, x2, x1[:2500]])                  # 25 s: the last window is completed by the flush
    gappy = long.copy()
    gappy[7000:7300, LEADS.index("V5")] = np.nan           # 0.6 s missing in V5 at 14 s
    out = []
    for name, x in (("long25", long), ("gappy25", gappy)):
        wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=x / 1000.0, fmt=["16"] * 12,
                    adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp))
        out.append(tmp / name)
    return out


def test_batch_replay_equals_analyse_record(chain, tmp_path):
    cfg, model, settings = chain
    paths = HR + _long_records(tmp_path)
    ref = [analyse_record(p, 61, "female", model=model, settings=settings, config=cfg) for p in paths]
    got = list(replay_records(paths, model, settings, PatientContext(age=61, sex="female")))
    assert [g.path for g in got] == paths and all(g.error is None for g in got)
    n = 0
    for r, g in zip(ref, got):
        assert len(r) == len(g.results) >= 1
        for a, b in zip(r, g.results):
            assert _stable(a) == _stable(b)
            n += 1
    assert n == len(HR) + 4 + 4                            # 25 s: windows at 0, 5, 10, 15 s
    levels = [x.triage_level for x in got[-1].results]    # the gap at 14.0-14.6 s is in the 2nd and 3rd
    assert levels[1:3] == ["cannot_interpret"] * 2 and "cannot_interpret" not in (levels[0], levels[3])
    print(f"\nbatch replay == analyse_record on {len(paths)} records, {n} windows")


def test_windows_are_bit_identical_to_the_drivers_block_size(chain):
    _, model, settings = chain
    x = np.vstack([read_record(HR[5])[0], read_record(HR[6])[0]])
    a_pipe = Pipeline(model, settings, "t")
    ref = [a for b in record_blocks(x, 500.0) for a in a_pipe.process_block(b)] + a_pipe.finish()
    b_pipe = Pipeline(model, settings, "t")
    analyse_samples(b_pipe, x, 500.0)
    c_pipe = Pipeline(model, settings, "t")
    got = [a for b in record_blocks(x, 500.0, block_s=5.0) for a in c_pipe.process_block(b)] + c_pipe.finish()
    assert len(ref) == len(got) == 3
    for a, b in zip(ref, got):
        assert np.array_equal(a.window.model_uv, b.window.model_uv)
        assert np.array_equal(a.window.native_uv, b.window.native_uv)
        assert a.result.probabilities == b.result.probabilities


def test_bad_record_is_reported_and_the_batch_goes_on(chain, tmp_path):
    _, model, settings = chain
    (tmp_path / "broken.hea").write_text("this is not a header\n")
    items = list(replay_records([HR[0], tmp_path / "nothing_here", tmp_path / "broken", HR[1]], model, settings))
    assert [i.error is None for i in items] == [True, False, False, True]
    assert all(str(tmp_path) in i.error for i in items[1:3])
    assert len(items[0].results) == len(items[3].results) == 1
