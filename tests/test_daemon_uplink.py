"""The daemon with [mqtt] enabled against a REAL mosquitto: results published in order and marked delivered
in the local store after PUBACK; fleet commands (patient/set, config/set) reach the daemon's DeviceControl,
are validated, applied, audited; a broker outage loses nothing."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt

from edge_app.control_socket import call
from test_daemon_e2e import (NORM_RECORD, _cli, _config, _sim, _sock, _start_daemon, _stop, _wait_ready,
                             _wait_results)
from mosquitto_broker import MosquittoBroker
from mqtt_helpers import Collector


def _command(port: int, name: str, args: dict) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"ecg/test-dev/cmd/{name}", json.dumps({"args": args, "by": "fleet-admin",
                                                       "correlation_id": f"t-{name}"}), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_results_delivered_once_in_order_and_fleet_commands_applied(tmp_path):
    with MosquittoBroker(tmp_path / "broker", persistence=True) as broker:
        # A persistent session: messages the broker accepts while the collector reconnects after the outage
        # are still handed to it, so "delivered to the broker" can be compared with "seen by a subscriber".
        col = Collector(broker.port, "ecg/#", persistent=True)
        sim = _sim(tmp_path, NORM_RECORD, speed=4.0)
        cfg = _config(tmp_path, extra=f"[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\n")
        proc = _start_daemon(cfg, tmp_path)
        try:
            _wait_ready(proc, tmp_path)
            deadline = time.monotonic() + 20
            while not call(_sock(tmp_path), "status")["result"]["uplink"].get("connected"):
                assert time.monotonic() < deadline, "uplink never connected"
                time.sleep(0.1)
            time.sleep(0.3)                          # command subscription follows the connect
            _command(broker.port, "patient/set", {"age": 63, "sex": "female"})
            _command(broker.port, "config/set", {"changes": {"windows.stride_s": 10}})
            _command(broker.port, "config/set", {"changes": {"windows.stride_s": 0}})     # refused
            replies = col.wait_for("reply", 3)
            assert [r["ok"] for r in sorted(replies, key=lambda r: r["correlation_id"])].count(True) == 2
            bad = [r for r in replies if not r["ok"]][0]
            assert "windows.stride_s" in json.dumps(bad["error"])
            res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= 4, timeout=90)
            # Outage: stop the broker, keep analysing, restart: everything queued is delivered.
            broker.stop()
            n_before = len(res)
            res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= n_before + 2, timeout=60)
            broker.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if call(_sock(tmp_path), "store/stats")["result"]["undelivered"] <= 1:
                    break
                time.sleep(0.2)
            final = call(_sock(tmp_path), "results/latest", n=100)["result"]
            st = call(_sock(tmp_path), "store/stats")["result"]
            want = {d["id"] for d in final if d["delivered"]}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not want <= {m["result"]["id"] for m in col.on("triage")}:
                time.sleep(0.1)
        finally:
            _stop(proc)
            sim.stop()
            col.close()
    assert st["undelivered"] <= 1, st                     # at most the one still in flight
    msgs = col.on("triage")
    # QoS 1 is at-least-once: a message whose PUBACK was lost in the outage may arrive twice, but always as
    # the SAME message (same msg_id), so consumers de-duplicate; a result is never queued as two messages.
    by_result: dict[str, set[str]] = {}
    for m in msgs:
        by_result.setdefault(m["result"]["id"], set()).add(m["msg_id"])
    assert all(len(v) == 1 for v in by_result.values()), "a result was queued twice"
    got = list(dict.fromkeys(m["result"]["id"] for m in msgs))          # first arrival order
    delivered = [d["id"] for d in reversed(final) if d["delivered"]]
    assert set(delivered) <= set(got)
    order = [got.index(i) for i in delivered]
    assert order == sorted(order), "results not delivered in order"
    assert final[0]["patient"] == {"age": 63.0, "sex": "female"}
    starts = [d["window"]["start_s"] for d in reversed(final)]
    assert any(b - a == 10.0 for a, b in zip(starts, starts[1:])), starts   # stride changed remotely
    audit = _cli("audit", "verify", "--config", str(cfg))
    assert audit.returncode == 0 and "config_change 1" in audit.stdout and "patient_set 1" in audit.stdout


def test_every_window_is_accounted_for_at_a_subscriber_results_gaps_and_runs(tmp_path):
    """A pulled cable and a front-end reset while publishing: a subscriber sees `started` (run_id), one
    `stream_gap` event per gap the daemon audited, results carrying the same run_id and the front end's clock,
    and `stopped`. A restart is a new run_id whose `started` names the previous run and its clean stop."""
    from edge_app.uplink import schemas
    with MosquittoBroker(tmp_path / "broker") as broker:
        col = Collector(broker.port, "ecg/#")
        sim = _sim(tmp_path, NORM_RECORD, speed=4.0, faults=("disconnect@12+3", "reset@30"))
        cfg = _config(tmp_path, extra=f"[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\n")
        proc = _start_daemon(cfg, tmp_path)
        try:
            _wait_ready(proc, tmp_path)
            res = _wait_results(proc, tmp_path, lambda rs: sum(d["gap_before"] for d in rs) >= 2
                                and len(rs) >= 6, timeout=120)
            assert _stop(proc) == 0
            proc2 = _start_daemon(cfg, tmp_path)
            _wait_ready(proc2, tmp_path)
            col.wait_for("event", 1 + 2 + 1 + 1, timeout=20)     # started, 2 gaps, stopped, started
            assert _stop(proc2) == 0
        finally:
            for p in (proc, locals().get("proc2")):
                if p is not None and p.poll() is None:
                    p.kill()
            sim.stop()
        time.sleep(0.5)
        col.close()
    events = list({m["msg_id"]: m for m in col.on("event")}.values())
    for m in events:
        schemas.validate(m, "event")
    ev = [m["event"] for m in events]
    runs = [e for e in ev if e["code"] == "started"]
    assert len(runs) == 2, ev
    run1, run2 = runs[0]["run_id"], runs[1]["run_id"]
    assert run1 != run2 and runs[0]["previous_stop"] is None
    assert runs[1]["previous_run_id"] == run1 and runs[1]["previous_stop"] == "clean"
    stopped = [e for e in ev if e["code"] == "stopped"]
    assert {e["run_id"] for e in stopped} == {run1, run2}
    assert [e["windows"] for e in stopped if e["run_id"] == run1][0] >= len(res)
    # every gap the daemon audited reached the subscriber, with both clocks
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    audited = [e["data"] for e in audit if e["kind"] == "stream_gap" and e["data"]["run_id"] == run1]
    gaps = [e for e in ev if e["code"] == "stream_gap" and e["run_id"] == run1]
    assert len(audited) >= 2 and [g["at_index"] for g in gaps] == [g["at_index"] for g in audited]
    assert any("device_reset" in g["events"] for g in gaps)
    assert [e["data"]["run_id"] for e in audit if e["kind"] == "start"] == [run1, run2]
    for g in gaps:
        assert isinstance(g["device_time_us"], int) and g["prev_end_index"] <= g["at_index"]
    # results: this run, the device clock on each window, no window across a gap
    triage = {m["result"]["id"]: m["result"] for m in col.on("triage")}
    assert {d["id"] for d in res} <= set(triage)
    for d in res:
        r = triage[d["id"]]
        assert r["run_id"] == run1 and isinstance(r["window"]["device_time_us"], int)
        for g in gaps:
            assert not (r["window"]["start_index"] < g["at_index"] < r["window"]["end_index"])
            if r["gap_before"] and r["window"]["start_index"] == g["at_index"]:
                assert r["window"]["device_time_us"] == g["device_time_us"]
    assert any(r["gap_before"] and any(r["window"]["start_index"] == g["at_index"] for g in gaps)
               for r in triage.values() if r["run_id"] == run1)
    # within one contiguous segment, the device clock advances exactly with the stream index
    import bisect
    cuts = sorted(g["at_index"] for g in gaps)
    mine = sorted((r for r in triage.values() if r["run_id"] == run1), key=lambda r: r["window"]["start_index"])
    pairs = [(a, b) for a, b in zip(mine, mine[1:])
             if bisect.bisect_right(cuts, a["window"]["start_index"]) == bisect.bisect_right(cuts, b["window"]["start_index"])]
    assert pairs
    for a, b in pairs:
        di = (b["window"]["start_index"] - a["window"]["start_index"]) / a["window"]["fs"] * 1e6
        assert abs(b["window"]["device_time_us"] - a["window"]["device_time_us"] - di) <= 2000, (a["window"], b["window"])
