"""`ecg-edge demo`: simulator on the built-in real MI record -> daemon -> results for humans; exits 0."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_for_duration_and_prints_results_with_notice():
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "demo", "--duration", "9", "--speed", "4"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "00181_hr" in out and "window 0.0-10.0 s" in out
    assert out.count("Triage aid, not a diagnosis.") >= 3
    assert "NORM" in out and "MI" in out


def test_demo_json_lines_and_ctrl_c_exits_0():
    p = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "demo", "--json", "--speed", "4"], cwd=str(ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        d = json.loads(line)
        assert d["schema"] == "ecg-edge.result/1" and d["notice"] == "Triage aid, not a diagnosis"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_config_check_and_default(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "config", "default"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "[windows]" in r.stdout
    f = tmp_path / "c.toml"
    f.write_text(r.stdout)
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "config", "check", str(f)], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK")
    f.write_text("[storage]\nstate_dir = \"/proc/nope\"\n")
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "run", "--config", str(f)], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'storage.state_dir'" in r.stderr and "Fix:" in r.stderr


def test_selftest_passes_on_shipped_model():
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "selftest", "--json"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and len(d["model_sha256"]) == 64 and len(d["records"]) >= 6


def test_demo_display_serves_the_bedside_page_and_prints_its_url():
    import re
    import urllib.error
    import urllib.request
    p = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "demo", "--display", "--speed", "4"], cwd=str(ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        t_end = time.monotonic() + 60
        while url is None and time.monotonic() < t_end:
            line = p.stdout.readline()
            assert line, p.stderr.read()[-2000:]
            m = re.search(r"bedside page on (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "no URL printed"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        latest = None
        while latest is None and time.monotonic() < t_end:      # the first result reaches the page
            try:
                with urllib.request.urlopen(url + "api/latest", timeout=10) as r:
                    latest = json.loads(r.read())
            except urllib.error.HTTPError as e:
                assert e.code == 404
                time.sleep(0.3)
        assert latest and latest["notice"] == "Triage aid, not a diagnosis" and latest["device_id"] == "demo"
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
