"""The short soak (one 150 s fault cycle) end to end: simulator on real PTB-XL records -> `ecg-edge run` ->
real mosquitto -> subscriber, with electrode off, a noise burst, corrupted bytes, a pulled cable, a broker
stop/restart and a daemon SIGKILL + restart. Fails if any result is lost or duplicated, if any stretch of the
front end's stream is unaccounted for (neither analysed nor inside / just before a reported break), if a break
goes unreported, or if a window with an electrode off is interpreted instead of "cannot interpret".

Takes ~3 minutes (real time is the point). The long version: python benchmarks/soak.py soak --duration 3600
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosquitto_broker import mosquitto_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed (apt-get install mosquitto)")
def test_short_soak_loses_duplicates_and_leaves_unaccounted_nothing():
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "soak", "--duration", "150", "--json"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert p.stdout.strip(), f"soak printed nothing (exit {p.returncode}): {p.stderr[-3000:]}"
    r = json.loads(p.stdout[p.stdout.find("{"):])
    summary = {k: r[k] for k in ("results", "slots_10s", "unaccounted_stretches_s", "lost_results",
                                 "duplicate_results", "duplicate_windows", "breaks", "fault_windows", "problems")}
    info = json.dumps(summary, indent=1)
    # the run did what it says: faults happened, the daemon restarted, the broker came back
    assert r["front_end"]["disconnects"] == 1 and r["front_end"]["frames"].get("corrupted", 0) == 3, info
    assert len(r["daemon_runs"]) == 2 and r["daemon_runs"][0]["how"] == "SIGKILL by the soak", info
    assert r["subscriber_connects"] >= 2, "the broker restart did not happen"
    assert r["results"]["at_subscriber"] >= 15, info
    # nothing lost, nothing duplicated, nothing unaccounted for
    assert r["lost_results"] == [] and r["audited_not_stored"] == [], info
    assert r["duplicate_results"] == [] and r["duplicate_windows"] == [], info
    assert r["unaccounted_stretches_s"] == [] and r["slots_10s"]["UNACCOUNTED"] == 0, info
    assert r["unreported_breaks"] == 0, info
    assert r["cannot_interpret_without_reason"] == [], info
    assert r["alarms"]["lost"] == [], info
    assert r["rhythm_alarms"] == [], info        # faults stay technical alarms, never asystole/VF/VT
    # "cannot interpret" instead of a guess with an electrode off
    lo = [f for f in r["fault_windows"] if f["fault"].startswith("electrode_off")]
    assert lo and lo[0]["windows_inside"] >= 1 and lo[0]["cannot_interpret"] == lo[0]["windows_inside"], info
    assert r["ok"] and p.returncode == 0, info
