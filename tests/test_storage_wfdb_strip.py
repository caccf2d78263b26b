"""The strip writer/reader without the wfdb package: byte for byte what wfdb writes, bit for bit what it reads.

And the lean-daemon guarantee it exists for (issue 17): storing and reading strips, and importing the
daemon's modules, loads neither wfdb nor pandas.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.storage.wfdb_strip import read_strip, write_strip
from firmware_bridge.leads import LEADS
from firmware_bridge.records import read_wfdb_uv

wfdb = pytest.importorskip("wfdb")

ROOT = Path(__file__).resolve().parents[1]
COMMENT = ["ecg-edge raw strip; triage aid, not a diagnosis"]


def _signals() -> list[tuple[np.ndarray, float]]:
    recs = sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").glob("*/*_hr.hea"))[:4]
    out = [(read_wfdb_uv(p.with_suffix("")).leads_uv(LEADS), 500.0) for p in recs]
    rng = np.random.default_rng(3)
    big = rng.normal(0, 20000, (3600, 12))                       # clips at +/-32.767 mV
    big[100:140, 4] = np.nan                                     # missing samples
    big[0, 7] = np.nan                                           # missing first sample
    out += [(big, 360.0), (rng.normal(0, 300, (2575, 12)), 257.5), (out[0][0][:1], 500.0)]
    return out


def test_writer_is_byte_identical_to_wfdb_wrsamp(tmp_path):
    for k, (uv, fs) in enumerate(_signals()):
        mine, ref = tmp_path / f"m{k}", tmp_path / f"r{k}"
        mine.mkdir()
        ref.mkdir()
        write_strip(mine, "abc", uv, fs, LEADS, COMMENT)
        d = np.clip(np.round(np.nan_to_num(uv)), -32767, 32767).astype(np.int64)
        d[np.isnan(uv)] = -32768
        wfdb.wrsamp("abc", fs=fs, units=["mV"] * 12, sig_name=list(LEADS), d_signal=d, fmt=["16"] * 12,
                    adc_gain=[1000.0] * 12, baseline=[0] * 12, comments=COMMENT, write_dir=str(ref))
        for ext in (".hea", ".dat"):
            assert (mine / f"abc{ext}").read_bytes() == (ref / f"abc{ext}").read_bytes(), (k, ext)


def test_reader_equals_wfdb_rdrecord(tmp_path):
    for k, (uv, fs) in enumerate(_signals()):
        write_strip(tmp_path, f"s{k}", uv, fs, LEADS, COMMENT)
        got, gfs, names = read_strip(tmp_path / f"s{k}")
        rec = wfdb.rdrecord(str(tmp_path / f"s{k}"))
        ref = rec.p_signal * 1000.0
        assert gfs == float(rec.fs) and names == list(LEADS)
        assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(got)], ref[~np.isnan(ref)])
        # 1 uV resolution, NaN kept as NaN
        ok = ~np.isnan(uv)
        assert np.max(np.abs(got[ok] - np.clip(uv[ok], -32767, 32767))) <= 0.5 + 1e-9
        assert np.array_equal(np.isnan(got), np.isnan(uv))


def test_store_and_daemon_modules_do_not_import_wfdb_or_pandas(tmp_path):
    code = f"""
import sys, numpy as np
import edge_app.daemon, edge_app.pipeline, edge_app.storage
from edge_app.storage import ResultStore
s = ResultStore({str(tmp_path)!r})
x = np.random.default_rng(0).normal(0, 500, (5000, 12)); x[10:20, 3] = np.nan
s.put({{"id": "r1", "time": "2026-12-04T10:00:00+00:00"}}, x, 500.0)
uv, fs = s.strip("r1")
assert uv.shape == (5000, 12) and fs == 500.0 and np.isnan(uv[10:20, 3]).all()
assert s.verify() == [], s.verify()
print(sorted(m for m in ("wfdb", "pandas", "scipy.signal") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
