"""The REAL daemon (`ecg-edge run`) on the front-end simulator replaying PTB-XL 00181 (MI), with MQTT and the
bedside page on: every result is followed on the wire by its own 12-lead strip; a station (plain paho client
speaking docs/mqtt.md) answers with receipts and a review; the bedside page's API shows both, and the
audit log records them. Wiring proof for the two sinks plugged into Daemon._assemble (strip, station feedback).
"""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge_app.uplink import schemas
from edge_app.uplink.strip_codec import decode_message
from mosquitto_broker import MosquittoBroker, free_port
from test_daemon_e2e import MI_RECORD, _config, _sim, _start_daemon, _stop, _wait_ready
from mqtt_helpers import Collector

pytestmark = pytest.mark.timeout(240)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def test_daemon_sends_strips_after_results_and_shows_the_station_word(tmp_path) -> None:
    port = free_port()
    with MosquittoBroker(tmp_path / "broker") as broker:
        col = Collector(broker.port, "ecg/test-dev/#")
        station = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="station")
        station.connect("127.0.0.1", broker.port)
        station.loop_start()
        sim = _sim(tmp_path, MI_RECORD, speed=4.0)
        cfg = _config(tmp_path, extra=f"[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\n"
                                      "telemetry_interval_s = 1\n"
                                      f"[display]\nenabled = true\nport = {port}\n")
        proc = _start_daemon(cfg, tmp_path)
        page = f"http://127.0.0.1:{port}/api"
        try:
            _wait_ready(proc, tmp_path)
            deadline = time.monotonic() + 90
            while len(col.on("strip")) < 3:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(0.2)
            wire = [(t.rsplit("/", 1)[1], json.loads(p)) for t, p, _ in col.messages
                    if t.endswith(("/triage", "/strip"))]
            results = {d["result"]["id"]: d for leaf, d in wire if leaf == "triage"}
            for i, (leaf, doc) in enumerate(wire):
                schemas.validate(doc, leaf)
                if leaf == "strip":            # its result was on the wire just before it, same priority
                    rid = doc["strip"]["result_id"]
                    prev = wire[i - 1][1]
                    assert wire[i - 1][0] == "triage" and prev["result"]["id"] == rid, [w[0] for w in wire]
                    assert doc["priority"] == prev["priority"] and doc["seq"] > prev["seq"]
                    strip = decode_message(doc)
                    assert strip.fs == 500.0 and strip.n_samples == 5000
                    assert strip.start_index == results[rid]["result"]["window"]["start_index"]
                    assert np.abs(strip.twelve_lead_uv()).max() > 100          # a real ECG, not zeros
            flagged = [d for d in results.values() if d["priority"] == "high"]
            assert flagged, "the MI record raised no high-priority result"
            target = flagged[0]
            rid = target["result"]["id"]
            strip_doc = next(d for leaf, d in wire if leaf == "strip" and d["strip"]["result_id"] == rid)

            fb = _get(f"{page}/results/{rid}/feedback")["feedback"]
            assert fb["delivery"]["state"] in ("sent", "queued") and fb["review"] is None
            receipt = {"schema": "ecg.receipt/1", "receipt_id": uuid.uuid4().hex, "device_id": "test-dev",
                       "msg_ids": [target["msg_id"], strip_doc["msg_id"]], "kinds": ["triage", "strip"],
                       "result_id": rid, "station": "St Mary's ED", "stored_at": _now()}
            station.publish("ecg/test-dev/receipt", json.dumps(receipt), qos=1).wait_for_publish(5)
            station.publish("ecg/test-dev/review", b"{broken", qos=1).wait_for_publish(5)     # ignored
            review = {"schema": "ecg.review/1", "review_id": uuid.uuid4().hex, "device_id": "test-dev",
                      "result_id": rid, "verdict": "confirmed", "text": "Anterior MI, cath lab informed",
                      "reviewer": "Dr A. Cardio", "reviewed_at": _now(), "station": "St Mary's ED"}
            station.publish("ecg/test-dev/review", json.dumps(review), qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 20
            while True:
                fb = _get(f"{page}/results/{rid}")["feedback"]
                if fb["delivery"]["state"] == "received" and fb["review"]:
                    break
                assert time.monotonic() < deadline, fb
                time.sleep(0.2)
            assert fb["delivery"]["station"] == "St Mary's ED" and fb["delivery"]["strip_received"] is True
            assert fb["review"]["verdict"] == "confirmed" and fb["review"]["reviewer"] == "Dr A. Cardio"
            # the fleet sees it too: strips sent and the station's word counted in the device's telemetry
            deadline = time.monotonic() + 15
            while not any((t.get("station_feedback") or {}).get("reviews") for t in col.on("telemetry")):
                assert time.monotonic() < deadline, col.on("telemetry")[-1:]
                time.sleep(0.2)
            tele = col.on("telemetry")[-1]
            assert tele["strips"]["queued"] >= 3 and tele["strips"]["mode"] == "all"
            assert tele["station_feedback"]["receipts"] >= 1 and tele["station_feedback"]["ignored"] >= 1
            assert proc.poll() is None
        finally:
            _stop(proc)
            sim.stop()
            station.loop_stop()
            station.disconnect()
            col.close()
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [e["data"]["result_id"] for e in audit if e["kind"] == "result_received"] == [rid]
    assert [e["data"]["verdict"] for e in audit if e["kind"] == "review_received"] == ["confirmed"]
    assert "ignored a review" in (tmp_path / "daemon.log").read_text()
