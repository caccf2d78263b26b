"""`ecg-cloud demo --json`: one command starts a local mosquitto, the station on SQLite and N real ambulances (the
daemon on the front-end simulator, each replaying a different built-in record); its first stdout line is one JSON
object with at least `url` and `token` (a demo viewer's API token), and results with strips arrive."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def test_demo_json_first_line_and_results_from_every_ambulance(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cloud_dashboard.cli", "demo", "--devices", "2", "--duration", "240",
                             "--json", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["url"].startswith("http://127.0.0.1:") and first["token"].startswith("ecgt_")
        assert [d["device_id"] for d in first["devices"]] == ["amb-01", "amb-02"]
        assert first["devices"][0]["record"] != first["devices"][1]["record"]      # different real records
        # anonymous is refused, the viewer's token works
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(first["url"] + "/api/v1/results", timeout=10)
        assert e.value.code == 401
        deadline = time.monotonic() + 180
        while True:
            devices = {d["device_id"]: d for d in get(first["url"] + "/api/v1/devices", first["token"])["devices"]}
            results = get(first["url"] + "/api/v1/results?limit=200", first["token"])["results"]
            from_dev = {r["device_id"] for r in results if r["has_strip"]}
            if {"amb-01", "amb-02"} <= from_dev and all(devices[d]["online"] for d in ("amb-01", "amb-02")):
                break
            assert proc.poll() is None and time.monotonic() < deadline, \
                (devices, results[:3], (tmp_path / "amb-01" / "daemon.log").read_text()[-2000:] if
                 (tmp_path / "amb-01" / "daemon.log").exists() else "")
            time.sleep(1.0)
        case = get(first["url"] + f"/api/v1/results/{results[0]['result_id']}", first["token"])
        assert "not a diagnosis" in case["notice"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
