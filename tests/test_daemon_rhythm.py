"""The live rhythm watch in the REAL daemon process: real front-end simulator over a pty, real model.

- ventricular flutter replayed (MIT-BIH 207 placed in 12 leads, tests/fixtures/rhythm12) raises the HIGH
  ventricular-fibrillation alarm within 10 s of its onset in stream time (IEC 60601-2-27), and every
  result carries a rhythm label;
- a normal record with the simulator's electrode-off and noise faults raises technical alarms only:
  no rhythm alarm (asystole, VF, VT) at all.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_app.control_socket import call
from edge_app.sinks.rhythm_watch import RHYTHM_ALARM_CODES

ROOT = Path(__file__).resolve().parents[1]
VFL_12 = ROOT / "tests" / "fixtures" / "rhythm12" / "207_vfl_12lead"
NORM_RECORD = ROOT / "edge_app" / "data" / "records" / "00387_hr"
VF_ONSET_S = 20.8          # first "(VFL" annotation in the excerpt (tests/fixtures/mitdb/207_vfl.atr)

pytestmark = pytest.mark.timeout(240)


def _run_daemon(tmp: Path, record: Path, faults: list[str], stream_s: float, speed: float = 2.0):
    from firmware_bridge.simulator import FrontEndSimulator
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[device]
id = "rhythm-dev"
[frontend]
port = "{tmp / 'frontend'}"
[storage]
state_dir = "{tmp / 'state'}"
""")
    sim = FrontEndSimulator(str(record), fs=500, speed=speed, loop=True, faults=faults,
                            link_path=str(tmp / "frontend"))
    proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sock = tmp / "state" / "control.sock"
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            try:
                if call(sock, "status", timeout=2)["ok"]:
                    break
            except (ConnectionError, OSError):
                time.sleep(0.2)
        sim.start()
        time.sleep(stream_s / speed + 3.0)
        results = call(sock, "results/latest", n=100)["result"]
    finally:
        sim.stop()
        proc.terminate()
        proc.wait(30)
    audit = [json.loads(line) for line in (tmp / "state" / "audit.jsonl").read_text().splitlines() if line.strip()]
    return results, audit


def _raised(audit: list[dict]) -> list[dict]:
    out = []
    for entry in audit:
        data = entry.get("data") or entry.get("payload") or entry
        if entry.get("kind", entry.get("type")) == "alarm" and data.get("state") == "raised":
            out.append(data)
    return out


def test_ventricular_flutter_raises_the_high_vf_alarm_within_10_s(tmp_path):
    results, audit = _run_daemon(tmp_path, VFL_12, [], stream_s=40.0)
    vf = [a for a in _raised(audit) if a.get("code") == "ventricular_fibrillation"]
    assert vf, [a.get("code") for a in _raised(audit)]
    assert vf[0]["priority"] == "high" and "not a diagnosis" in vf[0]["message"]
    assert results and all("rhythm" in r and r["rhythm"]["label"] for r in results), results[:1]


def test_electrode_off_and_noise_raise_no_rhythm_alarm(tmp_path):
    faults = ["electrode_off:LA@3+8", "noise:400@13+8", "electrode_off:V2@22+6"]
    results, audit = _run_daemon(tmp_path, NORM_RECORD, faults, stream_s=30.0)
    codes = [a.get("code") for a in _raised(audit)]
    assert not set(codes) & set(RHYTHM_ALARM_CODES), codes
    assert results, "the daemon analysed nothing"
