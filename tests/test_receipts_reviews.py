"""Receipts and reviews back to the crew, device side, on real parts: a real mosquitto (and the shipped ACL),
the real Uplink, ResultStore, AuditLog, LiveHub and the bedside page's HTTP API. The "station" is a plain
paho client publishing exactly what docs/mqtt.md specifies (ecg.receipt/1, ecg.review/1).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import wfdb

from edge_app.display import DisplayServer, LiveHub
from edge_app.sinks.station_feedback import StationFeedbackSink
from edge_app.sinks.strip_upload import StripSink
from edge_app.storage import AuditLog, ResultStore
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from mqtt_helpers import Collector

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "edge_app" / "data" / "records" / "00181_hr"
STATION = "St Mary's ED"


def _config(port: int, **kw) -> MqttConfig:
    return MqttConfig.from_dict({"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                 "telemetry_interval_s": 3600, **kw})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".123Z"


def _result(device: str) -> tuple[dict, np.ndarray, float]:
    rec = wfdb.rdrecord(str(RECORD))
    return ({"id": uuid.uuid4().hex, "device_id": device, "time": _now(), "run_id": str(uuid.uuid4()),
             "triage_level": "high", "alarm_priority": "high", "probabilities": {"MI": 0.93},
             "window": {"start_index": 0, "end_index": 5000, "fs": 500.0, "device_time_us": None},
             "notice": "Triage aid, not a diagnosis"}, rec.p_signal * 1000.0, float(rec.fs))


def _receipt(device: str, msg_ids: list[str], result_id: str | None, kinds: list[str] | None = None) -> dict:
    d = {"schema": "ecg.receipt/1", "receipt_id": uuid.uuid4().hex, "device_id": device, "msg_ids": msg_ids,
         "result_id": result_id, "station": STATION, "stored_at": _now()}
    return d | ({"kinds": kinds} if kinds else {})


def _review(device: str, result_id: str, verdict: str = "confirmed", **kw) -> dict:
    return {"schema": "ecg.review/1", "review_id": uuid.uuid4().hex, "device_id": device, "result_id": result_id,
            "verdict": verdict, "text": "Inferior STEMI. Cath lab activated.", "reviewer": "Dr A. Cardio",
            "reviewed_at": _now(), "station": STATION} | kw


def _station(port: int, **auth) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=f"station-{uuid.uuid4().hex[:6]}")
    if auth:
        c.username_pw_set(auth["username"], auth["password"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _until(cond, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _audit(path: Path, kind: str) -> list[dict]:
    return [e["data"] for e in map(json.loads, path.read_text().splitlines()) if e["kind"] == kind]


def test_receipt_then_review_reach_store_audit_and_bedside_page(tmp_path) -> None:
    state = tmp_path / "state"
    store = ResultStore(state)
    audit = AuditLog(state / "audit.jsonl", "amb-07")
    r, uv, fs = _result("amb-07")
    store.put(r, uv, fs)
    hub = LiveHub()
    hub.result_lookup = store.get
    with MosquittoBroker(tmp_path) as broker, DisplayServer(hub, port=0) as page:
        up = Uplink(_config(broker.port), "amb-07", state / "outbox.sqlite")
        up.on_delivered = store.mark_delivered_msg                      # what the uplink sink wires
        triage_id = up.publish_result(r, "high")
        store.set_msg_id(r["id"], triage_id)
        strip_id = StripSink(up, "all").publish(r, uv, fs)
        sink = StationFeedbackSink(state, store, audit, up, hub)
        hub.push_result(r)
        url = f"{page.url}api/results/{r['id']}"
        # not yet delivered: both messages wait in the outbox
        assert _get(url + "/feedback")["feedback"]["delivery"] == {"state": "queued", "queued": 2}
        station = _station(broker.port)
        try:
            up.start()
            assert up.wait_drained(20)
            _until(lambda: store.get(r["id"])["delivered"], what="PUBACK")
            assert sink.feedback(r["id"])["delivery"] == {"state": "sent"}
            # (the uplink subscribed before its first publish, so after the PUBACKs the SUBACK is in too)

            def send(leaf: str, doc) -> None:
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                station.publish(f"ecg/amb-07/{leaf}", body, qos=1).wait_for_publish(5)

            eseq = hub.event_seq
            receipt = _receipt("amb-07", [triage_id, strip_id], r["id"], ["triage", "strip"])
            send("receipt", receipt)
            d = _until(lambda: (_get(url + "/feedback")["feedback"]["delivery"]
                                if sink.counters["receipts"] else None), what="receipt")
            assert d == {"state": "received", "station": STATION, "stored_at": receipt["stored_at"],
                         "strip_received": True}
            events = [p for _, kind, p in hub.events_since(eseq)[1] if kind == "feedback"]
            assert events and events[-1]["result_id"] == r["id"]
            assert events[-1]["feedback"]["delivery"]["state"] == "received"
            send("receipt", receipt)                                     # QoS 1 repeat: a no-op
            _until(lambda: sink.counters["repeats"] == 1, what="repeat receipt")

            review = _review("amb-07", r["id"])
            send("review", review)
            _until(lambda: sink.counters["reviews"] == 1, what="review")
            detail = _get(url)
            assert detail["feedback"]["review"]["verdict"] == "confirmed"
            assert detail["feedback"]["review"]["reviewer"] == "Dr A. Cardio"
            assert detail["feedback"]["delivery"]["state"] == "received"
            assert _get(f"{page.url}api/results?limit=5")["results"][0]["feedback"]["review"]["review_id"] == \
                review["review_id"]
            send("review", review)
            _until(lambda: sink.counters["repeats"] == 2, what="repeat review")

            # malformed, foreign and unknown messages: logged and ignored, the link runs on
            for leaf, bad in (("review", b"{not json"), ("review", _review("amb-07", r["id"], verdict="maybe")),
                              ("review", _review("amb-99", r["id"])), ("review", _review("amb-07", "nope")),
                              ("review", b"[" + b" " * 20000 + b"]"), ("review", b'"just a string"'),
                              ("receipt", _receipt("amb-07", [uuid.uuid4().hex], None)),
                              ("receipt", _receipt("amb-07", [], r["id"])),
                              ("receipt", _receipt("amb-07", [triage_id], uuid.uuid4().hex))):
                send(leaf, bad)
            _until(lambda: (sink.counters["ignored"], sink.counters["unmatched"], sink.counters["repeats"]) == (7, 1, 3),
                   what="seven ignored, one receipt not mapped to a result held here, one more repeat")
            later = _review("amb-07", r["id"], verdict="repeat_ecg", text=None, reviewer="Dr B. Second")
            send("review", later)
            _until(lambda: sink.counters["reviews"] == 2, what="second review")
        finally:
            station.loop_stop()
            station.disconnect()
            up.stop()
    fb = sink.feedback(r["id"])
    assert fb["review"]["review_id"] == later["review_id"] and fb["review"]["text"] is None
    assert [v["verdict"] for v in fb["reviews"]] == ["confirmed", "repeat_ecg"]
    audit.close()
    received = _audit(state / "audit.jsonl", "result_received")
    assert len(received) == 1 and received[0]["station"] == STATION
    assert sorted(received[0]["msg_ids"]) == sorted([triage_id, strip_id])
    reviewed = _audit(state / "audit.jsonl", "review_received")
    assert [(a["verdict"], a["reviewer"]) for a in reviewed] == [("confirmed", "Dr A. Cardio"),
                                                                 ("repeat_ecg", "Dr B. Second")]
    # the word back survives a restart (and the sink works without an uplink: nothing arrives then)
    again = StationFeedbackSink(state, store, None, None, None)
    fb2 = again.feedback(r["id"])
    assert fb2["delivery"]["station"] == STATION and len(fb2["reviews"]) == 2
    store.close()


def test_without_an_uplink_the_page_says_kept_on_this_device(tmp_path) -> None:
    store = ResultStore(tmp_path)
    r, uv, fs = _result("amb-07")
    store.put(r, uv, fs)
    hub = LiveHub()
    hub.result_lookup = store.get
    StationFeedbackSink(tmp_path, store, None, None, hub)
    assert hub.result(r["id"])["feedback"]["delivery"] == {"state": "local_only"}
    assert LiveHub().feedback(r["id"]) is None              # a page without a feedback source says nothing
    store.close()


def _passwd(tmp_path: Path, users: dict[str, str]) -> str:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    path = tmp_path / "passwd"
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    subprocess.run([tool, "-U", str(path)], check=True)
    os.chmod(path, 0o600)
    return str(path)


def test_shipped_acl_lets_a_device_send_strips_and_hear_only_its_own_station_word(tmp_path) -> None:
    """deploy/mosquitto/acl: amb-01 publishes its strip and reads its receipts/reviews; amb-02 can neither
    forge a review into amb-01's subtree nor read amb-01's reviews."""
    pw = _passwd(tmp_path, {"admin": "adminpw", "amb-01": "pw1", "amb-02": "pw2"})
    with MosquittoBroker(tmp_path, password_file=pw, acl_file=str(REPO / "deploy" / "mosquitto" / "acl")) as broker:
        admin = Collector(broker.port, "ecg/+/strip", username="admin", password="adminpw")
        got: list[bytes] = []
        dev = Uplink(_config(broker.port, username="amb-01", password="pw1"), "amb-01", tmp_path / "o1.sqlite")
        dev.subscribe(dev.topics.review, lambda t, p: got.append(p))
        snoop: list[bytes] = []
        other = _station(broker.port, username="amb-02", password="pw2")
        other.on_message = lambda c, u, m: snoop.append(m.payload)
        other.subscribe("ecg/amb-01/review", qos=1)
        station = _station(broker.port, username="admin", password="adminpw")
        try:
            r, uv, fs = _result("amb-01")
            dev.start()
            assert dev.wait_connected(10)
            StripSink(dev, "all").publish(r, uv, fs)
            assert dev.wait_drained(10) and dev.stats()["broker_refused"] == 0
            assert admin.wait_for("strip", 1, timeout=10)[0]["strip"]["result_id"] == r["id"]
            time.sleep(0.3)
            forged = json.dumps(_review("amb-01", r["id"], reviewer="Mallory")).encode()
            other.publish("ecg/amb-01/review", forged, qos=1).wait_for_publish(5)
            real = json.dumps(_review("amb-01", r["id"])).encode()
            _until(lambda: station.publish("ecg/amb-01/review", real, qos=1).wait_for_publish(5) is None and got,
                   what="the station's review")
            time.sleep(0.5)
        finally:
            for c in (other, station):
                c.loop_stop()
                c.disconnect()
            dev.stop()
            admin.close()
    assert got and all(p == real for p in got), "only the station may write a device's reviews"
    assert snoop == [], "a device must not read another device's reviews"


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_bedside_page_in_chromium_shows_queued_then_received_then_the_review(tmp_path) -> None:
    """The crew's view, in real Chromium: the result on screen says how far it got, live over SSE."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    state = tmp_path / "state"
    store = ResultStore(state)
    r, uv, fs = _result("amb-07")
    store.put(r, uv, fs)
    hub = LiveHub()
    hub.result_lookup = store.get
    hub.strip_lookup = lambda rid: (lambda a: (a[1], a[0]))(store.strip(rid))
    with MosquittoBroker(tmp_path) as broker, DisplayServer(hub, port=0) as page, \
            sync_api.sync_playwright() as pw:
        up = Uplink(_config(broker.port), "amb-07", state / "outbox.sqlite")
        up.on_delivered = store.mark_delivered_msg
        triage_id = up.publish_result(r, "high")
        store.set_msg_id(r["id"], triage_id)
        sink = StationFeedbackSink(state, store, None, up, hub)
        hub.push_result(r)
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        station = _station(broker.port)
        try:
            tab = browser.new_page()
            tab.goto(page.url)
            delivery = tab.locator("#delivery")
            sync_api.expect(delivery).to_contain_text("not yet delivered, 1 queued", timeout=15000)
            up.start()
            assert up.wait_drained(20)
            station.publish("ecg/amb-07/receipt", json.dumps(_receipt("amb-07", [triage_id], r["id"])),
                            qos=1).wait_for_publish(5)
            sync_api.expect(delivery).to_contain_text(f"received by {STATION} at ", timeout=15000)
            assert tab.locator("#review").is_hidden()
            station.publish("ecg/amb-07/review", json.dumps(_review("amb-07", r["id"])), qos=1).wait_for_publish(5)
            review = tab.locator("#review")
            sync_api.expect(review).to_contain_text("Hospital review: CONFIRMED", timeout=15000)
            sync_api.expect(review).to_contain_text("Dr A. Cardio")
            sync_api.expect(tab.locator("#station")).to_have_class(re.compile(r"\bfresh\b"))   # draws the eye
            sync_api.expect(review).to_contain_text("Inferior STEMI. Cath lab activated.")
            sync_api.expect(tab.locator("#notice")).to_contain_text("NOT A DIAGNOSIS")
            assert tab.locator("#station").bounding_box()["y"] < 400      # above the fold, under the banner
            tab.screenshot(path=str(tmp_path / "bedside.png"))

            # the monitor goes on: a newer window takes the screen, the hospital's word must stay visible
            newer, uv2, fs2 = _result("amb-07")
            store.put(newer, uv2, fs2)
            hub.push_result(newer)
            sync_api.expect(tab.locator("#result-title")).to_have_attribute("data-id", newer["id"], timeout=10000)
            sync_api.expect(review).to_contain_text("Hospital review of ECG ", timeout=10000)
            sync_api.expect(review).to_contain_text("CONFIRMED")
            sync_api.expect(delivery).to_contain_text("not yet delivered")          # the newer one: not sent
            tab.click("#review-show")
            sync_api.expect(tab.locator("#result-title")).to_have_attribute("data-id", r["id"])
            sync_api.expect(delivery).to_contain_text(f"received by {STATION}")
            sync_api.expect(tab.locator("#review-show")).to_have_count(0)

            # an 800x480 kiosk panel: the hospital's word fits on one line and the live strip stays on screen
            tab.set_viewport_size({"width": 800, "height": 480})
            boxes = tab.evaluate("""['notice', 'banner', 'station', 'live'].map(id => {
                const r = document.getElementById(id).getBoundingClientRect(); return [id, r.top, r.bottom]; })""")
            assert all(top >= 0 and bottom <= 481 for _, top, bottom in boxes), boxes
            tab.screenshot(path=str(tmp_path / "bedside-800x480.png"))
            tab.set_viewport_size({"width": 1280, "height": 720})

            # a reload (or a daemon restart: the sink reads the newest review back) still shows it
            tab.reload()
            sync_api.expect(review).to_contain_text("CONFIRMED", timeout=10000)
            StationFeedbackSink(state, store, None, None, hub2 := LiveHub())
            assert hub2.status()["last_review"]["result_id"] == r["id"]
        finally:
            browser.close()
            station.loop_stop()
            station.disconnect()
            up.stop()
    assert sink.counters["reviews"] == 1
    store.close()


def test_any_payload_on_the_station_topics_is_ignored_or_stored_never_raised(tmp_path) -> None:
    """Generated hostile payloads (wrong types, missing or extra keys, huge or odd strings, non-JSON bytes)
    straight into the handlers: each one is ignored, counted as a repeat/unmatched, or stored; none raises."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    store = ResultStore(tmp_path)
    r, uv, fs = _result("amb-07")
    store.put(r, uv, fs)

    class Link:                       # only what the sink reads of an uplink: who it is and its topics
        device_id = "amb-07"
        topics = type("T", (), {"receipt": "ecg/amb-07/receipt", "review": "ecg/amb-07/review"})
        outbox = None

        def subscribe(self, topic, handler) -> None:
            pass

    sink = StationFeedbackSink(tmp_path, store, None, Link(), None)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40))
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=8)
    good_review, good_receipt = _review("amb-07", r["id"]), _receipt("amb-07", [uuid.uuid4().hex], r["id"])
    mutated = st.sampled_from([good_review, good_receipt]).flatmap(
        lambda base: st.dictionaries(st.sampled_from(sorted(base) + ["extra"]), values, max_size=len(base) + 1)
        .map(lambda changes: {**base, **changes}))
    payloads = st.one_of(st.binary(max_size=64), values.map(lambda v: json.dumps(v).encode()),
                         mutated.map(lambda d: json.dumps(d).encode()))

    @hypothesis.settings(max_examples=300, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(payload=payloads, leaf=st.sampled_from(["receipt", "review"]))
    def feed(payload: bytes, leaf: str) -> None:
        (sink.on_receipt if leaf == "receipt" else sink.on_review)(f"ecg/amb-07/{leaf}", payload)

    feed()
    assert sink.counters["ignored"] > 100                     # most generated payloads are rejected ...
    for rv in sink.store.reviews(r["id"]):                     # ... and whatever was stored is well-formed
        assert rv["verdict"] in ("confirmed", "not_confirmed", "repeat_ecg") and rv["reviewer"]
    store.close()
