"""Store-and-forward against a REAL mosquitto: outages, SIGKILL, ordering, duplicates, disk budget."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from edge_app.uplink import schemas
from edge_app.uplink.outbox import Outbox, OutboxFull, PRIORITY_RANK
from edge_app.uplink.outbox_cli import run as outbox_cli
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker, free_port
from mqtt_helpers import Collector

REPO = Path(__file__).resolve().parents[1]
PRIOS = ["low", "high", "medium", "none", "medium", "low", "high"]


def fast_config(port: int, **kw) -> MqttConfig:
    return MqttConfig.from_dict({"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                 "telemetry_interval_s": 3600, **kw})


def assert_priority_order(msgs: list[dict]) -> None:
    ranks = [PRIORITY_RANK[m["priority"]] for m in msgs]
    assert ranks == sorted(ranks), f"not critical-first: {[m['priority'] for m in msgs]}"
    for p in PRIORITY_RANK:  # within a priority: the order they were produced
        seqs = [m["result"]["n"] for m in msgs if m["priority"] == p]
        assert seqs == sorted(seqs)



def _drain_after_restart(tmp_path, db, broker, expected: int, settle_s: float) -> list[dict]:
    """Bring the broker back, restart a daemon that only drains the outbox file, collect what arrives."""
    broker.start()
    col = Collector(broker.port, "ecg/amb-kill/triage")
    proc2 = _runner(tmp_path, db, broker.port, 0)  # the restarted daemon: only drains
    try:
        col.wait_for("triage", expected, timeout=30)
        time.sleep(settle_s)
        return col.on("triage")
    finally:
        proc2.kill()
        proc2.wait(10)
        col.close()
        broker.stop()

def test_outage_then_recovery_delivers_everything_critical_first_once(tmp_path):
    broker = MosquittoBroker(tmp_path, persistence=True).start()
    # the dashboard's subscriber has a persistent session, so it misses nothing across broker restarts
    col = Collector(broker.port, "ecg/amb-01/triage", persistent=True)
    broker.stop()  # the link is down before the device starts
    up = Uplink(fast_config(broker.port), "amb-01", tmp_path / "outbox.db")
    up.start()
    try:
        ids = [up.publish_result({"n": i, "triage": f"r{i}"}, PRIOS[i % len(PRIOS)]) for i in range(70)]
        assert up.outbox.depth() == 70 and not up.stats()["connected"]
        time.sleep(1.0)  # several failed reconnect attempts with backoff
        broker.start()
        assert up.wait_connected(10)
        got = col.wait_for("triage", 70)
        assert up.wait_drained(10)
        time.sleep(0.3)
        got = col.on("triage")
        assert Counter(m["msg_id"] for m in got) == Counter(ids), "lost or duplicated results"
        assert_priority_order(got)
        assert all(m["historical"] for m in got), "results queued while offline must be marked historical"
        assert all(m["disclaimer"].startswith("Triage aid") for m in got)
        for m in got:
            schemas.validate(m, "triage")

        # second outage on the same port: the link reconnects by itself with backoff. The collector's
        # session survives the broker restart (persistence), so it counts whatever arrives meanwhile.
        col.messages.clear()
        broker.stop()
        deadline = time.monotonic() + 5
        while up.stats()["connected"] and time.monotonic() < deadline:
            time.sleep(0.05)
        more = [up.publish_result({"n": 100 + i}, "high" if i == 9 else "low") for i in range(10)]
        broker.start()
        assert up.wait_connected(10) and up.wait_drained(10)
        got2 = col.wait_for("triage", 10)
        time.sleep(0.3)
        got2 = col.on("triage")
        assert [m["msg_id"] for m in got2][0] == more[9], "the critical result must lead after the outage"
        assert Counter(m["msg_id"] for m in got2) == Counter(more)
        assert up.stats()["connects"] >= 2
        col.close()
    finally:
        up.stop()
        broker.stop()


def test_live_results_are_not_historical_and_reach_on_delivered(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        delivered: list[str] = []
        up = Uplink(fast_config(broker.port), "clinic-2", tmp_path / "o.db", on_delivered=delivered.append)
        up.start()
        col = Collector(broker.port, "ecg/clinic-2/#")
        try:
            assert up.wait_connected(10)
            rid = up.publish_result({"n": 1}, "medium")
            aid = up.publish_alarm({"type": "physiological", "code": "suspected_mi"}, "high")
            eid = up.publish_event({"schema": "ecg-edge.event/1", "code": "started", "device_id": "clinic-2",
                                    "run_id": "12345678-1234-4234-8234-123456789abc",
                                    "time": "2026-11-30T05:00:00.000Z", "previous_run_id": None,
                                    "previous_stop": None})
            assert up.wait_drained(10)
            tri, alarm, event = col.wait_for("triage", 1), col.wait_for("alarm", 1), col.wait_for("event", 1)
            assert event[0]["msg_id"] == eid and event[0]["event"]["code"] == "started"
            for leaf, docs in (("triage", tri), ("alarm", alarm), ("event", event)):
                for doc in docs:
                    schemas.validate(doc, schemas.BY_LEAF[leaf])
                    schemas.validate(doc, schemas.BY_LEAF[leaf], use_jsonschema=False)
            assert tri[0]["msg_id"] == rid and tri[0]["historical"] is False
            assert alarm[0]["msg_id"] == aid and alarm[0]["alarm"]["code"] == "suspected_mi"
            assert sorted(delivered) == sorted([rid, aid, eid])
            with pytest.raises(ValueError):
                up.publish_result({"n": 2}, "urgent-ish")
            assert up.outbox.depth() == 0
        finally:
            col.close()
            up.stop()


RUNNER = textwrap.dedent("""
    import sys, time, json
    sys.path.insert(0, {repo!r})
    from edge_app.uplink.service import Uplink
    from edge_app.uplink.settings import MqttConfig
    from edge_app.uplink.outbox import OutboxFull
    db, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    strip = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    cfg = MqttConfig.from_dict({{"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                "telemetry_interval_s": 3600, "outbox_max_bytes": 1024 * 1024,
                                "outbox_min_free_bytes": 0}})
    up = Uplink(cfg, "amb-kill", db)
    up.start()
    if len(sys.argv) > 4 and sys.argv[4] == "wait":
        up.wait_connected(10)
    prios = {prios!r}
    for i in range(count):
        try:
            mid = up.publish_result({{"n": i, "strip": "x" * strip}}, prios[i % len(prios)])
        except OutboxFull:
            print("FULL", flush=True)
            break
        print("ACK", mid, flush=True)   # only after publish_result returned = durably queued
    print("DONE", flush=True)
    while True:
        time.sleep(1)
""")


def _runner(tmp_path: Path, db: Path, port: int, count: int, wait_connected: bool = False,
            strip: int = 200) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(repo=str(REPO), prios=PRIOS))
    return subprocess.Popen([sys.executable, str(script), str(db), str(port), str(count),
                             "wait" if wait_connected else "nowait", str(strip)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _read_acks(proc: subprocess.Popen, stop_after: int | None, until=None) -> list[str]:
    acks: list[str] = []
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("ACK"):
            acks.append(line.split()[1])
            if stop_after is not None and len(acks) >= stop_after:
                break
            if until is not None and until():
                break
        elif line.startswith("DONE") or line.startswith("FULL"):
            break
    return acks


def test_sigkill_with_full_outbox_then_restart_loses_nothing(tmp_path):
    broker = MosquittoBroker(tmp_path)  # down while the device queues
    db = tmp_path / "outbox.db"
    proc = _runner(tmp_path, db, broker.port, 400)
    try:
        acks = _read_acks(proc, stop_after=300)  # kill while it is still queueing: power cut mid-stream
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acks) == 300
    got = _drain_after_restart(tmp_path, db, broker, len(acks), settle_s=0.5)
    ids = Counter(m["msg_id"] for m in got)
    missing = set(acks) - set(ids)
    assert not missing, f"{len(missing)} acknowledged results lost after SIGKILL"
    assert max(ids.values()) == 1, "duplicates delivered"
    assert_priority_order(got)
    assert all(m["historical"] for m in got)


def test_sigkill_with_outbox_at_its_budget_then_restart_loses_nothing(tmp_path):
    broker = MosquittoBroker(tmp_path)  # down: the outbox fills up to its 1 MiB budget and refuses more
    db = tmp_path / "outbox.db"
    proc = _runner(tmp_path, db, broker.port, 10_000, strip=20_000)
    try:
        acks = _read_acks(proc, stop_after=None)  # returns at FULL
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 30 < len(acks) < 10_000, len(acks)
    got = _drain_after_restart(tmp_path, db, broker, len(acks), settle_s=0.3)
    ids = Counter(m["msg_id"] for m in got)
    assert set(acks) <= set(ids) and max(ids.values()) == 1
    assert_priority_order(got)


def test_sigkill_while_draining_loses_nothing_and_duplicates_carry_the_same_id(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        db = tmp_path / "outbox.db"
        col = Collector(broker.port, "ecg/amb-kill/triage")
        proc = _runner(tmp_path, db, broker.port, 5000, wait_connected=True)
        try:
            # it keeps queueing AND draining at the same time; kill once 50 have arrived
            acks = _read_acks(proc, stop_after=None, until=lambda: len(col.on("triage")) >= 50)
            proc.send_signal(signal.SIGKILL)  # mid-drain: some rows in flight, PUBACK never processed
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        before = len(col.on("triage"))
        proc2 = _runner(tmp_path, db, broker.port, 0)
        try:
            deadline = time.monotonic() + 30
            while len({m["msg_id"] for m in col.on("triage")}) < len(acks) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            proc2.kill()
            proc2.wait(10)
        got = col.on("triage")
        col.close()
    ids = Counter(m["msg_id"] for m in got)
    assert len(acks) < 5000 and set(acks) <= set(ids), f"lost {len(set(acks) - set(ids))}"
    dups = sum(c - 1 for c in ids.values())
    # at most the rows that were in flight (PUBACK lost with the process) come twice, with the same msg_id
    assert dups <= 20 + 1, f"{dups} duplicates"
    assert before > 0, "nothing was delivered before the kill: the test did not exercise a mid-drain kill"


def test_outbox_budget_refuses_new_messages_and_never_deletes(tmp_path):
    ob = Outbox(tmp_path / "o.db", max_bytes=1024 * 1024, min_free_bytes=0)
    body = {"strip": "y" * 20000}
    n = 0
    with pytest.raises(OutboxFull) as exc:
        while True:
            ob.put("triage", body, "low")
            n += 1
    assert "reserved for high priority" in str(exc.value)
    low_count = ob.depth()
    assert low_count == n and n > 30
    ob.put("triage", body, "high")  # the reserve takes a suspected MI even though routine traffic is refused
    assert ob.depth() == n + 1
    with pytest.raises(OutboxFull):
        for _ in range(100):
            ob.put("triage", body, "high")
    depth = ob.depth()
    ob.close()
    ob2 = Outbox(tmp_path / "o.db", max_bytes=1024 * 1024, min_free_bytes=0)
    assert ob2.depth() == depth, "rows must survive reopen"
    assert ob2.summary()["by_priority"]["low"]["count"] == low_count
    ob2.close()


def test_full_outbox_raises_a_technical_alarm_over_mqtt(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        up = Uplink(fast_config(broker.port, outbox_max_bytes=1024 * 1024, outbox_min_free_bytes=0), "dev-full",
                    tmp_path / "o.db")
        col = Collector(broker.port, "ecg/dev-full/alarm")
        # fill while offline-ish: do not start the link until the outbox is full
        with pytest.raises(OutboxFull):
            for i in range(1000):
                up.publish_result({"n": i, "strip": "z" * 20000}, "low")
        depth = up.outbox.depth()
        up.start()
        try:
            assert up.wait_connected(10)
            with pytest.raises(OutboxFull):
                up._last_full_alarm = 0.0
                up.publish_result({"n": -1, "strip": "z" * 2_000_000}, "low")  # larger than the whole budget
            alarms = col.wait_for("alarm", 1)
            assert alarms and alarms[0]["alarm"]["code"] == "outbox_full"
            assert up.wait_drained(20), "the queued results still drain"
            assert up.stats()["delivered"] == depth
        finally:
            col.close()
            up.stop()


def test_outbox_cli_reports_depth_oldest_and_priorities(tmp_path, capsys):
    ob = Outbox(tmp_path / "o.db", min_free_bytes=0)
    for i, p in enumerate(["low", "high", "high", "technical"]):
        ob.put("triage" if p != "technical" else "alarm", {"n": i}, p, created=1_000_000 + i)
    assert outbox_cli(["--db", str(tmp_path / "o.db"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["depth"] == 4 and doc["by_priority"]["high"]["count"] == 2 and doc["by_priority"]["none"]["count"] == 1
    assert doc["oldest"]["priority"] == "low"
    assert outbox_cli(["--db", str(tmp_path / "o.db")]) == 0
    assert "4 message(s) waiting" in capsys.readouterr().out
    assert outbox_cli(["--db", str(tmp_path / "missing.db")]) == 2
    ob.close()
    # through the daemon's config: <storage.state_dir>/outbox.sqlite
    state = tmp_path / "state"
    state.mkdir()
    ob = Outbox(state / "outbox.sqlite", min_free_bytes=0)
    ob.put("alarm", {"code": "lead_off"}, "medium")
    ob.close()
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{state}"\n')
    assert outbox_cli(["--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_priority"]["medium"]["count"] == 1


def test_link_cut_mid_drain_loses_nothing_and_keeps_order(tmp_path):
    """Dead zone while draining: the link drops with rows in flight (PUBACKs lost), the broker stays up."""
    import threading
    from mqtt_helpers import LinkCutter
    with MosquittoBroker(tmp_path) as broker:
        col = Collector(broker.port, "ecg/amb-mid/triage")
        link = LinkCutter(broker.port)
        up = Uplink(fast_config(link.port), "amb-mid", tmp_path / "o.db")
        up.start()
        restored = threading.Event()

        def dead_zone() -> None:
            deadline = time.monotonic() + 30
            while len(col.raw("triage")) < 100 and time.monotonic() < deadline:
                time.sleep(0.001)
            link.cut()  # while rows are in flight
            time.sleep(0.7)
            link.restore()
            restored.set()

        try:
            assert up.wait_connected(10)
            t = threading.Thread(target=dead_zone)
            t.start()
            ids = []
            while not restored.is_set():
                ids.append(up.publish_result({"n": len(ids)}, "low"))
            ids += [up.publish_result({"n": len(ids) + i}, "low") for i in range(20)]
            t.join()
            assert up.wait_connected(10) and up.wait_drained(30)
            deadline = time.monotonic() + 10
            while len({m["msg_id"] for m in col.on("triage")}) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            got = col.on("triage")
            connects = up.stats()["connects"]
        finally:
            up.stop()
            col.close()
            link.close()
    ids_got = Counter(m["msg_id"] for m in got)
    assert set(ids) <= set(ids_got), f"lost {len(set(ids) - set(ids_got))} of {len(ids)}"
    assert sum(c - 1 for c in ids_got.values()) <= 20, "more duplicates than messages in flight"
    first_seen: list[int] = []
    seen = set()
    for m in got:
        if m["msg_id"] not in seen:
            seen.add(m["msg_id"])
            first_seen.append(m["result"]["n"])
    assert first_seen == sorted(first_seen), "a newer result overtook an older one across the reconnect"
    assert connects >= 2


def test_results_with_numpy_and_nan_are_queued_exactly(tmp_path):
    import numpy as np
    ob = Outbox(tmp_path / "o.db", min_free_bytes=0)
    ob.put("triage", {"p": np.float32(0.25), "hr": float("nan"), "v": np.arange(3), "t": (1, 2)}, "low")
    (m,) = ob.next_batch(1)
    assert m.body == {"p": 0.25, "hr": None, "v": [0, 1, 2], "t": [1, 2]}
    with pytest.raises(TypeError):
        ob.put("triage", {"x": object()}, "low")
    assert ob.depth() == 1
    ob.close()


def test_corrupt_outbox_is_quarantined_not_deleted_and_reported(tmp_path):
    db = tmp_path / "outbox.sqlite"
    db.write_bytes(b"this is not an SQLite database, it is a torn SD card block" * 100)
    with MosquittoBroker(tmp_path) as broker:
        col = Collector(broker.port, "ecg/amb-c/alarm")
        up = Uplink(fast_config(broker.port), "amb-c", db)
        assert up.outbox.quarantined and Path(up.outbox.quarantined).read_bytes().startswith(b"this is not")
        up.start()
        try:
            mid = up.publish_result({"n": 1}, "high")
            assert up.wait_connected(10) and up.wait_drained(10)
            alarms = col.wait_for("alarm", 1)
            assert alarms[0]["alarm"]["code"] == "outbox_corrupt"
            assert up.stats()["delivered"] == 2 and mid
        finally:
            col.close()
            up.stop()
