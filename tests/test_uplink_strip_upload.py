"""Strip upload (device side) against a REAL mosquitto: order right after each result, priority, the
mqtt.strips modes, the config key, and the uplink's inbound subscriptions (receipts/reviews travel on them).

Strips are real PTB-XL 10 s records (edge_app/data/records, CC BY 4.0) at their native 500 Hz.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import wfdb

from edge_app.config import load_config
from edge_app.errors import ConfigError
from edge_app.sinks.strip_upload import StripSink, first_sample_time
from edge_app.uplink import schemas
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from edge_app.uplink.strip_codec import LEADS, decode_message
from mosquitto_broker import MosquittoBroker
from mqtt_helpers import Collector

RECORDS = Path(__file__).resolve().parents[1] / "edge_app" / "data" / "records"


def _config(port: int, **kw) -> MqttConfig:
    return MqttConfig.from_dict({"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                 "telemetry_interval_s": 3600, **kw})


def _strip(name: str) -> tuple[np.ndarray, float]:
    rec = wfdb.rdrecord(str(RECORDS / name))
    return rec.p_signal * 1000.0, float(rec.fs)


def _result(priority: str, n: int) -> dict:
    return {"id": uuid.uuid4().hex, "time": "2026-12-04T14:02:01.500Z", "run_id": str(uuid.uuid4()), "n": n,
            "alarm_priority": priority, "triage_level": "high" if priority == "high" else "none",
            "window": {"start_index": 5000 * n, "end_index": 5000 * (n + 1), "fs": 500.0,
                       "device_time_us": 10_000_000 * n},
            "timings_ms": {"since_last_sample_ms": 250.0}}


def test_each_strip_follows_its_result_and_a_suspected_mi_goes_first(tmp_path) -> None:
    """Queued while offline: low, high (suspected MI), medium. Delivered: each priority's result then its
    strip, high first; every strip decodes to the samples that were queued."""
    with MosquittoBroker(tmp_path) as broker:
        up = Uplink(_config(broker.port), "amb-07", tmp_path / "outbox.sqlite")
        sink = StripSink(up, "all")
        sent = {}
        for n, (prio, rec) in enumerate((("low", "00062_hr"), ("high", "00181_hr"), ("medium", "00270_hr"))):
            r = _result(prio, n)
            uv, fs = _strip(rec)
            up.publish_result(r, prio)                     # what the uplink sink does first ...
            assert sink.publish(r, uv, fs)                 # ... then the strip sink (dispatcher order)
            sent[r["id"]] = (prio, uv)
        col = Collector(broker.port, "ecg/amb-07/#")
        try:
            up.start()
            assert up.wait_drained(30)
            col.wait_for("strip", 3, timeout=20)
            time.sleep(0.3)
        finally:
            up.stop()
            col.close()
    got = [(t.rsplit("/", 1)[1], json.loads(p)) for t, p, _ in col.messages if t.endswith(("/triage", "/strip"))]
    order = [(leaf, doc["priority"]) for leaf, doc in got]
    assert order == [("triage", "high"), ("strip", "high"), ("triage", "medium"), ("strip", "medium"),
                     ("triage", "low"), ("strip", "low")], order
    for i in range(0, 6, 2):                                     # the strip right after ITS result
        assert got[i + 1][1]["strip"]["result_id"] == got[i][1]["result"]["id"]
    for leaf, doc in got:
        schemas.validate(doc, leaf)
        if leaf == "strip":
            strip = decode_message(doc)
            prio, uv = sent[strip.result_id]
            assert doc["priority"] == prio and strip.fs == 500.0 and strip.n_samples == 5000
            cols = [LEADS.index(n) for n in strip.leads]
            assert np.array_equal(strip.samples_uv, np.round(uv[:, cols]).astype(np.int32))
            assert strip.t0 == "2026-12-04T14:01:51.250Z"      # time - 10 s - 250 ms since the last sample
    assert sink.counters["queued"] == 3 and sink.counters["failed"] == 0


@pytest.mark.parametrize("mode, expect", [("all", ["high", "medium", "low", "none"]),
                                          ("flagged", ["high", "medium"]), ("off", [])])
def test_strip_modes_choose_which_results_send_their_strip(tmp_path, mode, expect) -> None:
    up = Uplink(_config(1), "amb-07", tmp_path / "outbox.sqlite")     # never started: only the outbox
    sink = StripSink(up, mode)
    uv, fs = _strip("00387_hr")
    for n, prio in enumerate(("high", "medium", "low", "none")):
        up.publish_result(_result(prio, n), prio)
        sink.publish(_result(prio, n), uv, fs)
    rows = up.outbox.next_batch(100, set())
    assert sorted(m.body["priority"] for m in rows if m.kind == "strip") == sorted(expect)
    assert sum(m.kind == "triage" for m in rows) == 4                  # results are never held back
    assert sink.counters["skipped"] == 4 - len(expect)
    up.outbox.close()


def test_a_strip_that_cannot_be_encoded_is_counted_not_raised(tmp_path) -> None:
    up = Uplink(_config(1), "amb-07", tmp_path / "outbox.sqlite")
    sink = StripSink(up, "all")
    bad = np.full((5000, 12), np.inf)                # NaN is a missing sample (sent as such); inf is not data
    assert sink.publish(_result("high", 0), bad, 500.0) is None
    assert sink.counters["failed"] == 1 and up.outbox.depth() == 0
    up.outbox.close()


def test_strips_config_key_is_validated_by_the_daemon_config(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[mqtt]\nenabled = true\nstrips = "flagged"\n')
    assert load_config(p).mqtt.strips == "flagged"
    assert MqttConfig.from_dict({}).strips == "all"
    for bad, needle in (('"sometimes"', '"all"'), ("false", "quote")):
        p.write_text(f"[mqtt]\nstrips = {bad}\n")
        with pytest.raises(ConfigError) as exc:
            load_config(p)
        assert "mqtt.strips" in str(exc.value) and needle in str(exc.value)
    with pytest.raises(ValueError):
        StripSink(None, "sometimes")


def test_first_sample_time_accounts_for_window_and_lag() -> None:
    r = {"time": "2026-12-04T14:02:11.000Z", "timings_ms": {"since_last_sample_ms": 1500}}
    assert first_sample_time(r, 5000, 500.0) == "2026-12-04T14:01:59.500Z"
    assert first_sample_time({"time": "2026-12-04T14:02:11+00:00"}, 2500, 250.0) == "2026-12-04T14:02:01.000Z"


def test_inbound_subscriptions_survive_a_bad_handler_and_a_reconnect(tmp_path) -> None:
    """Uplink.subscribe: exact topics of the device's own subtree only; handlers run off paho's thread; a
    handler that raises does not stop the next message; subscriptions come back after a broker restart."""
    import paho.mqtt.client as mqtt
    got: list[tuple[str, bytes, str]] = []
    ev = threading.Event()

    def handler(topic: str, payload: bytes) -> None:
        got.append((topic, payload, threading.current_thread().name))
        ev.set()
        if payload == b"boom":
            raise RuntimeError("handler bug")

    with MosquittoBroker(tmp_path, persistence=False) as broker:
        up = Uplink(_config(broker.port), "amb-07", tmp_path / "outbox.sqlite")
        for bad in ("ecg/amb-07/#", "ecg/other/receipt", "ecg/amb-07/+/x"):
            with pytest.raises(ValueError):
                up.subscribe(bad, handler)
        up.subscribe(up.topics.receipt, handler)
        up.start()
        station = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="station")
        station.connect("127.0.0.1", broker.port)
        station.loop_start()
        try:
            assert up.wait_connected(10)
            up.subscribe(up.topics.review, handler)                   # after start: subscribed at once

            def send(topic: str, payload: bytes) -> None:
                ev.clear()
                deadline = time.monotonic() + 10
                n = len(got)
                while len(got) == n and time.monotonic() < deadline:   # SUBACK may still be on its way
                    station.publish(topic, payload, qos=1).wait_for_publish(5)
                    ev.wait(0.5)
                assert len(got) > n, f"nothing arrived on {topic}"

            send("ecg/amb-07/receipt", b"boom")
            send("ecg/amb-07/receipt", b'{"second": 1}')
            send("ecg/amb-07/review", b'{"third": 1}')
            station.publish("ecg/amb-07/cmdx", b"x", qos=1).wait_for_publish(5)
            broker.stop()
            broker.start()
            deadline = time.monotonic() + 15
            while not up.wait_connected(0.2) and time.monotonic() < deadline:
                pass
            station.reconnect()
            time.sleep(0.5)
            send("ecg/amb-07/review", b'{"after": "restart"}')
        finally:
            station.loop_stop()
            station.disconnect()
            up.stop()
    assert [p for _, p, _ in got][:3] == [b"boom", b'{"second": 1}', b'{"third": 1}']
    assert got[-1][1] == b'{"after": "restart"}'
    assert {name for _, _, name in got} == {"uplink-inbound"}
    assert all(t in ("ecg/amb-07/receipt", "ecg/amb-07/review") for t, _, _ in got)


def test_routine_strips_stop_at_half_the_outbox_budget_results_and_mi_strips_go_on(tmp_path) -> None:
    """A long outage: strips must never leave the results themselves without room in the outbox."""
    up = Uplink(_config(1, outbox_max_bytes=1024 * 1024), "amb-07", tmp_path / "outbox.sqlite")
    sink = StripSink(up, "all")
    uv, fs = _strip("00181_hr")                     # ~35 kB per strip
    for n in range(40):                              # 40 windows x (5 kB result + 35 kB strip) > 1 MiB
        r = _result("low", n)
        up.publish_result(r, "low")
        sink.publish(r, uv, fs)
    rows = up.outbox.next_batch(1000, set())
    strips = [m for m in rows if m.kind == "strip"]
    assert sum(m.kind == "triage" for m in rows) == 40, "every result was queued"
    assert 10 <= len(strips) < 40 and sink.counters["over_budget"] == 40 - len(strips)
    assert up.outbox.used_bytes() <= 0.5 * up.outbox.max_bytes + 40_000     # stopped at the first strip past half
    mi = _result("high", 99)
    up.publish_result(mi, "high")
    assert sink.publish(mi, uv, fs) is not None      # a suspected MI's strip is still offered
    up.outbox.close()


def test_a_strip_the_outbox_refused_is_offered_again_after_its_result(tmp_path) -> None:
    """Outbox full: the strips are refused, remembered, and queued from the store on a later status tick,
    each only once its own result is in the outbox (the uplink sink re-queues refused results likewise)."""
    from edge_app.storage import ResultStore
    store = ResultStore(tmp_path / "state")
    with MosquittoBroker(tmp_path) as broker:
        up = Uplink(_config(broker.port, outbox_max_bytes=1024 * 1024), "amb-07", tmp_path / "outbox.sqlite")
        sink = StripSink(up, "all", store)
        while up.outbox.used_bytes() < 1024 * 1024 - 30_000:        # room for results, not for a strip
            up.publish_event({"code": "filler", "pad": "x" * 20_000}, "high")
        uv, fs = _strip("00181_hr")
        first, second = _result("high", 0), _result("high", 1)
        for r in (first, second):
            store.put(r, uv, fs)
        store.set_msg_id(first["id"], up.publish_result(first, "high"))   # the second result is not queued yet
        assert sink.publish(first, uv, fs) is None and sink.publish(second, uv, fs) is None
        assert list(sink.pending) == [first["id"], second["id"]] and sink.retry() == 0     # still full
        col = Collector(broker.port, "ecg/amb-07/#")
        try:
            up.start()
            assert up.wait_drained(30)                               # the link drains the outbox: room again
            assert sink.retry() == 1 and list(sink.pending) == [second["id"]]   # waits for its result
            store.set_msg_id(second["id"], up.publish_result(second, "high"))
            assert sink.retry() == 1 and not sink.pending and sink.counters["retried"] == 2
            assert up.wait_drained(30)
            col.wait_for("strip", 2, timeout=10)
        finally:
            up.stop()
            col.close()
    wire = [(t.rsplit("/", 1)[1], json.loads(p)) for t, p, _ in col.messages if t.endswith(("/triage", "/strip"))]
    order = [(leaf, d["result"]["id"] if leaf == "triage" else d["strip"]["result_id"]) for leaf, d in wire]
    for rid in (first["id"], second["id"]):                           # each strip after its own result
        assert order.index(("triage", rid)) < order.index(("strip", rid)), order
        strip = decode_message(next(d for leaf, d in wire if leaf == "strip" and d["strip"]["result_id"] == rid))
        assert np.array_equal(strip.samples_uv[:, 0], np.round(uv[:, 0]).astype(np.int32))
    store.close()


def test_strips_of_results_recovered_at_start_follow_them(tmp_path) -> None:
    """A crash between storing a result and queueing it: at the next start the uplink sink queues the result
    and the strip sink, built before it, queues the strip after it on the first status tick."""
    from edge_app.sinks.uplink import UplinkSink
    from edge_app.storage import ResultStore
    store = ResultStore(tmp_path / "state")
    uv, fs = _strip("00296_hr")
    lost = _result("high", 0)
    store.put(lost, uv, fs)                                      # stored, never handed to the outbox
    up = Uplink(_config(1), "amb-07", tmp_path / "outbox.sqlite")
    uplink_sink = UplinkSink(up, store)
    strips = StripSink(up, "all", store)                         # the daemon's order: before queue_unsent
    assert list(strips.pending) == [lost["id"]]
    assert strips.retry() == 0                                   # its result is not queued yet: wait
    uplink_sink.queue_unsent()
    assert strips.retry() == 1 and not strips.pending
    rows = up.outbox.next_batch(10, set())
    assert [(m.kind, (m.body.get("result") or m.body.get("strip"))["id" if m.kind == "triage" else "result_id"])
            for m in rows] == [("triage", lost["id"]), ("strip", lost["id"])]
    up.outbox.close()
    store.close()
