"""The word back across a dead zone, device and station both real: the device's Uplink + sinks against the
receiving station (`ecg-cloud serve`, SQLite) over a real mosquitto.

A review written while the ambulance is out of coverage is published by the station to a device that is not
there (QoS 1 to a clean session: lost); when the device comes back its birth makes the station re-send
(docs/mqtt.md), and the device stores it once. On the way, the strip the station serves is checked sample for
sample against what the device measured (the codec across the whole chain, through the database).
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack

import numpy as np
import pytest

from edge_app.sinks.station_feedback import StationFeedbackSink
from edge_app.sinks.strip_upload import StripSink
from edge_app.storage import AuditLog, ResultStore
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker

testing = pytest.importorskip("cloud_dashboard.testing")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
DEVICE = "amb-9"


def _until(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_review_written_during_a_dead_zone_reaches_the_crew_on_reconnect(tmp_path, database) -> None:
    result, uv, fs = testing.record_analysis("00181_hr", device_id=DEVICE)      # real chain, real model
    rid = result["id"]
    state = tmp_path / "state"
    store = ResultStore(state)
    audit = AuditLog(state / "audit.jsonl", DEVICE)
    store.put(result, uv, fs)
    with ExitStack() as stack:
        url = "" if database == "sqlite" else stack.enter_context(testing.PostgresServer(tmp_path)).url
        broker = stack.enter_context(MosquittoBroker(tmp_path / "broker"))
        st = stack.enter_context(testing.run_stack(tmp_path / "station", broker.port, database_url=url))
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "reconnect_min_s": 0.1,
                                    "reconnect_max_s": 0.5, "telemetry_interval_s": 3600})

        def ambulance() -> tuple[Uplink, StationFeedbackSink]:
            up = Uplink(cfg, DEVICE, state / "outbox.sqlite")
            up.on_delivered = store.mark_delivered_msg
            return up, StationFeedbackSink(state, store, audit, up, None)

        up, sink = ambulance()
        triage_id = up.publish_result(result, result["alarm_priority"])
        store.set_msg_id(rid, triage_id)
        StripSink(up, "all").publish(result, uv, fs)
        up.start()
        try:
            d = _until(lambda: (lambda x: x if x["state"] == "received" and x["strip_received"] else None)(
                sink.feedback(rid)["delivery"]), what="receipts for the result and its strip")
            assert d["station"] == st.config.station.name
        finally:
            up.stop()                                                  # into the dead zone
        # the station serves the strip the device measured, sample for sample (1 uV)
        status, case = st.api("GET", f"/api/v1/results/{rid}")
        assert status == 200 and case["strip"]["fs"] == fs and case["strip"]["n_samples"] == len(uv)
        served = dict(zip(case["strip"]["leads"], case["strip"]["samples_uv"]))
        for i, lead in enumerate(("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")):
            assert np.abs(np.asarray(served[lead]) - uv[:, i]).max() <= 1.5, lead   # derived leads: +-1.5 uV
        assert np.array_equal(np.asarray(served["V2"]), np.round(uv[:, 7]))          # measured: exact

        status, _ = st.api("POST", f"/api/v1/results/{rid}/review",
                           {"verdict": "repeat_ecg", "text": "Noisy V1-V3, please repeat"}, token=st.tokens["clinician"])
        assert status == 201
        _until(lambda: st.api("GET", f"/api/v1/results/{rid}")[1]["reviews"][0]["sent_to_device_at"],
               what="the station publishing the review (to nobody)")
        time.sleep(0.5)
        assert sink.feedback(rid)["review"] is None                     # the ambulance did not hear it

        up, sink = ambulance()                                         # back in coverage: same state dir
        up.start()
        try:
            fb = _until(lambda: (lambda f: f if f["review"] else None)(sink.feedback(rid)),
                        what="the review re-sent on the device's birth")
            _until(lambda: sink.counters["repeats"] >= 2, what="the re-sent receipts (repeats, harmless)")
        finally:
            up.stop()
    assert fb["review"]["verdict"] == "repeat_ecg" and fb["review"]["text"] == "Noisy V1-V3, please repeat"
    assert fb["review"]["reviewer"] and fb["review"]["station"] == fb["delivery"]["station"]
    audit.close()
    entries = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    assert [e["data"]["verdict"] for e in entries if e["kind"] == "review_received"] == ["repeat_ecg"]
    received = [k for e in entries if e["kind"] == "result_received" for k in e["data"]["kinds"]]
    assert sorted(received) == ["strip", "triage"], received          # each once, despite the re-sends
    store.close()
