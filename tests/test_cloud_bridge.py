"""Beyond one machine with existing engines only: a regional Mosquitto bridged to a central one. Ambulances talk
to their regional broker; the station's ingest talks to the central broker; results and strips flow up,
receipts and reviews flow back down -- two real brokers here, one bridge configuration (docs/dashboard.md)."""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from cloud_dashboard.testing import result_messages, run_stack
from cloud_support import mi_record  # noqa: F401
from mosquitto_broker import MosquittoBroker

UP = ("availability", "birth", "telemetry", "config/reported", "triage", "alarm", "event", "strip",
      "cmd/+/reply", "cmd/+/+/reply")
DOWN = ("receipt", "review", "cmd/#")


def bridge_lines(central_port: int, name: str = "regional-test") -> list[str]:
    """The regional side of the bridge (what docs/dashboard.md ships as an example)."""
    lines = [f"connection {name}", f"address 127.0.0.1:{central_port}", "bridge_protocol_version mqttv50",
             "cleansession false", f"remote_clientid {name}", "restart_timeout 1 5", "bridge_attempt_unsubscribe false"]
    lines += [f"topic ecg/+/{leaf} out 1" for leaf in UP]
    lines += [f"topic ecg/+/{leaf} in 1" for leaf in DOWN]
    return lines


def test_regional_broker_bridged_to_the_central_station(tmp_path, mi_record):
    with MosquittoBroker(tmp_path / "central") as central, \
            MosquittoBroker(tmp_path / "regional", extra=bridge_lines(central.port)) as regional, \
            run_stack(tmp_path / "st", central.port, station="Central ED") as st:
        got: dict[str, list] = {"receipt": [], "review": []}
        seen = threading.Event()
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="amb-r1", protocol=mqtt.MQTTv5)

        def on_message(c, u, m):  # noqa: ANN001
            got[m.topic.rsplit("/", 1)[1]].append(json.loads(m.payload))
            seen.set()
        dev.on_message = on_message
        dev.connect("127.0.0.1", regional.port)
        dev.loop_start()
        dev.subscribe([("ecg/amb-r1/receipt", 1), ("ecg/amb-r1/review", 1)])
        time.sleep(1.0)                                                 # the bridge is up
        dev.publish("ecg/amb-r1/availability", "online", qos=1, retain=True).wait_for_publish(10)
        tri, strip = result_messages(*mi_record, device_id="amb-r1")
        dev.publish("ecg/amb-r1/triage", json.dumps(tri), qos=1).wait_for_publish(10)
        dev.publish("ecg/amb-r1/strip", json.dumps(strip), qos=1).wait_for_publish(10)
        rid = tri["result"]["id"]
        deadline = time.monotonic() + 30
        while len(got["receipt"]) < 2:
            assert time.monotonic() < deadline, f"no receipts through the bridge: {regional.log_text()[-1500:]}"
            time.sleep(0.1)
        assert {r["result_id"] for r in got["receipt"]} == {rid} and got["receipt"][0]["station"] == "Central ED"
        case = st.api("GET", f"/api/v1/results/{rid}")[1]
        assert case["strip"]["n_samples"] == 5000 and case["suspected_mi"]
        devices = {d["device_id"]: d for d in st.api("GET", "/api/v1/devices")[1]["devices"]}
        assert devices["amb-r1"]["online"] is True
        assert st.api("POST", f"/api/v1/results/{rid}/review", {"verdict": "not_confirmed"},
                      token=st.tokens["clinician"])[0] == 201
        deadline = time.monotonic() + 30
        while not got["review"]:
            assert time.monotonic() < deadline, "no review through the bridge"
            time.sleep(0.1)
        assert got["review"][0]["verdict"] == "not_confirmed" and got["review"][0]["result_id"] == rid
        dev.loop_stop()
