"""Issue 17: the daemon and `ecg-edge replay` import only what they use.

scipy.signal (~80 MB: its package imports scipy.linalg, scipy.fft, scipy.special, ...), wfdb and pandas
(~40 MB) and TensorFlow must not be loaded by the device's code paths: starting the daemon's modules,
warming the pipeline up, analysing real windows (gate, beats, rhythm, model, explanation), storing a result
with its WFDB strip and reading it back, and replaying a real format-16 record. Each path runs in a fresh
interpreter; the test fails naming the module that pulled a heavy library in.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy.signal", "scipy.linalg", "scipy.fft", "scipy.special", "wfdb", "pandas", "tensorflow", "keras")
RECORD = ROOT / "edge_app" / "data" / "records" / "00181_hr"


def _heavy_after(code: str) -> list[str]:
    probe = code + f"\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    r = subprocess.run([sys.executable, "-c", probe], cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_daemon_start_and_analysis_path_load_no_heavy_library(tmp_path):
    code = f"""
import numpy as np
import edge_app.daemon, edge_app.cli.run, edge_app.display, edge_app.uplink.service, paho.mqtt.client
from edge_app.config import load_config
from edge_app.inference import load_model
from edge_app.pipeline import Pipeline, PipelineSettings, read_record, record_blocks
from edge_app.storage import ResultStore
cfg = load_config(None)
model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
pipe = Pipeline(model, PipelineSettings.from_config(cfg), "t")
pipe.warm_up(500.0)
x, fs, _ = read_record({str(RECORD)!r})
out = [a for b in record_blocks(x, fs) for a in pipe.process_block(b)] + pipe.finish()
assert out and out[0].result.probabilities is not None
store = ResultStore({str(tmp_path)!r})
store.put(out[0].result.to_dict(), out[0].window.native_uv, fs)
uv, _ = store.strip(out[0].result.id)
assert uv.shape == (5000, 12) and store.verify() == []
"""
    assert _heavy_after(code) == []


def test_replay_cli_loads_no_heavy_library():
    code = f"""
import contextlib, io
from edge_app.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["replay", {str(RECORD)!r}, "--json"])
assert rc == 0 and '"triage"' in buf.getvalue()
"""
    assert _heavy_after(code) == []
