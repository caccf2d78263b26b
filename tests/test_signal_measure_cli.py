"""`ecg-edge measure`: run() directly and as `python -m edge_app.signal_chain.measure_cli`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import wfdb

from training.beat_eval import score_record
from edge_app.signal_chain.measure_cli import run

ROOT = Path(__file__).resolve().parents[1]
MIT = ROOT / "tests" / "fixtures" / "mitdb"
PTB500 = ROOT / "tests" / "fixtures" / "ptbxl_official_sample" / "records500" / "00000" / "00062_hr"
PTB100 = ROOT / "tests" / "fixtures" / "ptbxl_official_sample" / "records100" / "00000" / "00062_lr"


def _json(capsys, argv):
    rc = run(argv)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out                      # exactly one JSON object
    return rc, json.loads(lines[0])


def test_json_on_mitdb_excerpt_matches_annotations(capsys):
    rc, d = _json(capsys, [str(MIT / "119_excerpt"), "--json"])
    assert rc == 0
    assert d["fs"] == 360.0 and d["channels"] == ["MLII", "V1"] and d["channels_used"] == ["MLII"]
    ann = wfdb.rdann(str(MIT / "119_excerpt"), "atr")
    s = score_record("119", ann.sample, ann.symbol, np.array(d["r_peaks"]), 360.0, d["n_samples"])
    assert s.sensitivity >= 0.98 and s.ppv >= 0.98
    assert 50 < d["heart_rate_bpm"] < 90
    assert d["quality"]["verdict"] in ("good", "acceptable", "unusable") and isinstance(d["quality"]["reasons"], list)
    assert set(d["rr"]) >= {"mean_ms", "rmssd_ms", "cv", "irregular", "rr_ms"}
    assert "not a diagnosis" in d["note"]


def test_channel_option_and_12_lead_same_record_two_rates(capsys):
    rc, d500 = _json(capsys, [str(PTB500), "--json"])
    rc2, d100 = _json(capsys, ["measure", str(PTB100), "--json"])      # leading 'measure' word accepted
    assert rc == rc2 == 0
    assert d500["fs"] == 500.0 and d100["fs"] == 100.0
    assert len(d500["channels_used"]) == 12
    assert abs(d500["heart_rate_bpm"] - d100["heart_rate_bpm"]) < 2.0
    # the same beats at both rates (indices in each record's own rate)
    p5 = np.array(d500["r_peaks"]) / 500.0
    p1 = np.array(d100["r_peaks"]) / 100.0
    assert p5.size == p1.size and np.max(np.abs(p5 - p1)) < 0.05
    assert d500["quality"]["verdict"] in ("good", "acceptable")
    assert set(d500["quality"]["leads"]) == {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"}
    rc, d = _json(capsys, [str(PTB500), "--channel", "7", "--json"])
    assert rc == 0 and d["channels_used"] == ["V2"]


def test_human_output_and_errors(capsys, tmp_path):
    assert run([str(MIT / "208_excerpt")]) == 0
    out = capsys.readouterr().out
    assert "Heart rate" in out and "Signal quality" in out and "not a diagnosis" in out
    assert run([str(tmp_path / "missing")]) == 2
    assert "no WFDB header" in capsys.readouterr().err
    assert run([str(MIT / "208_excerpt"), "--channel", "5"]) == 2
    assert "channels 0..1" in capsys.readouterr().err
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    assert run([str(tmp_path / "bad"), "--json"]) == 2
    captured = capsys.readouterr()
    assert "error" in json.loads(captured.out)


def test_single_channel_record_written_by_wfdb(capsys, tmp_path):
    rec = wfdb.rdrecord(str(MIT / "208_excerpt"), channels=[0])
    wfdb.wrsamp("one", fs=360, units=["mV"], sig_name=["MLII"], p_signal=rec.p_signal, fmt=["16"],
                write_dir=str(tmp_path))
    rc, d = _json(capsys, [str(tmp_path / "one"), "--json"])
    assert rc == 0 and d["channels"] == ["MLII"] and d["n_beats"] > 80


def test_python_dash_m_entry_point():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "edge_app.signal_chain.measure_cli", str(MIT / "119_excerpt"), "--json"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fs"] == 360.0 and len(d["r_peaks"]) > 60


def test_dispatch_through_ecg_edge_cli(capsys):
    """`ecg-edge measure ...` goes through edge_app.cli's dispatch to run()."""
    from edge_app import cli                  # the project's own module: an import error must fail, not skip
    rc = cli.main(["measure", str(MIT / "119_excerpt"), "--json"])
    d = json.loads(capsys.readouterr().out.strip())
    assert rc == 0 and d["fs"] == 360.0 and d["n_beats"] > 60
