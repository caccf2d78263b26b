"""The station's MQTT intake against a real mosquitto, on SQLite and on a real PostgreSQL: `ecg-cloud serve` with
its ingest worker processes (shared subscription, persistent sessions, PUBACK after COMMIT).

- a worker SIGKILLed while a device flushes its backlog loses nothing and stores nothing twice;
- malformed, oversized and foreign-topic messages are quarantined while the service runs on;
- receipts go back to the device; a clinician's review goes back to the device, and again on its next birth;
- retained device state published before the station started is seen (non-shared state subscription).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from cloud_dashboard.db.engine import make_engine, session_factory
from cloud_dashboard.db.models import Message, Quarantine, Result, Strip
from cloud_dashboard.testing import result_messages, run_stack
from cloud_support import database_url, mi_record, norm_record, pg_server  # noqa: F401
from edge_app.uplink.schemas import validate
from mosquitto_broker import MosquittoBroker


class Device:
    """A minimal MQTT 5 device: publishes QoS 1 and records what the station sends back."""

    def __init__(self, port: int, device_id: str):
        self.device_id = device_id
        self.got: dict[str, list[dict]] = {"receipt": [], "review": []}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(100)
        self.c.on_message = self._on_message
        self.c.will_set(f"ecg/{device_id}/availability", "offline", qos=1, retain=True)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe([(f"ecg/{device_id}/receipt", 1), (f"ecg/{device_id}/review", 1)])
        time.sleep(0.3)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        leaf = msg.topic.rsplit("/", 1)[1]
        with self.lock:
            self.got[leaf].append(json.loads(msg.payload))

    def publish(self, leaf: str, doc, retain: bool = False):  # noqa: ANN001
        payload = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
        return self.c.publish(f"ecg/{self.device_id}/{leaf}", payload, qos=1, retain=retain)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(pred, timeout: float = 60.0, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        out = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Message, Result, Strip, Quarantine)}
        out["distinct_results"] = s.scalar(select(func.count(func.distinct(Result.result_id))))
    engine.dispose()
    return out


def test_worker_killed_mid_flush_loses_and_duplicates_nothing(tmp_path, database_url, mi_record):
    n = 150
    with MosquittoBroker(tmp_path / "broker") as broker, \
            run_stack(tmp_path / "st", broker.port, database_url, workers=2) as st:
        url = st.config.database_url
        dev = Device(broker.port, "amb-1")
        msgs = []
        for i in range(n):
            tri, strip = result_messages(*mi_record, device_id="amb-1", seq=2 * i)
            msgs += [("triage", tri), ("strip", strip)]
        victim = st.worker_pids()[0]
        infos = []

        def send(part):  # noqa: ANN001
            for k, (leaf, doc) in enumerate(part):
                infos.append(dev.publish(leaf, doc))
                if k % 37 == 0:
                    infos.append(dev.publish(leaf, doc))          # the device's own at-least-once repeats
        split = 2 * len(msgs) // 3
        send(msgs[:split])
        wait_for(lambda: counts(url)["messages"] > 10, 60, "intake under way")
        os.kill(victim, signal.SIGKILL)                           # mid-flush: a backlog queued, batches open
        send(msgs[split:])                                        # keeps flowing while the worker is dead
        for info in infos:
            info.wait_for_publish(30)
        c = wait_for(lambda: (lambda c: c if c["messages"] >= 2 * n else None)(counts(url)), 120,
                     "every message stored")
        time.sleep(2.0)                                           # let any late redelivery land
        c = counts(url)
        assert c["messages"] == 2 * n and c["results"] == n and c["strips"] == n and c["distinct_results"] == n
        assert c["quarantine"] == 0
        assert victim not in st.worker_pids() and len(st.worker_pids()) == 2   # restarted by the supervisor
        # every stored message was confirmed to the device (receipts queued before the PUBACK)
        stored = {doc["msg_id"] for _, doc in msgs}
        wait_for(lambda: stored <= {m for r in list(dev.got["receipt"]) for m in r["msg_ids"]}, 60, "receipts")
        for r in dev.got["receipt"][:5]:
            validate(r, "receipt")
        status, body = st.api("GET", "/api/v1/results?limit=1000")
        assert status == 200 and body["total"] == n
        dev.close()


def test_malformed_and_foreign_messages_quarantined_while_running(tmp_path, database_url, mi_record, norm_record):
    with MosquittoBroker(tmp_path / "broker") as broker, \
            run_stack(tmp_path / "st", broker.port, database_url, workers=1, max_payload_bytes=65536) as st:
        pids = st.worker_pids()
        intruder = Device(broker.port, "amb-666")
        good, _ = result_messages(*norm_record, device_id="amb-2")
        foreign = result_messages(*mi_record, device_id="amb-1")[0]
        intruder.publish("triage", b"{not json").wait_for_publish(10)
        intruder.publish("triage", foreign).wait_for_publish(10)          # speaks for amb-1 under its own topic
        intruder.publish("strip", b"x" * 100_000).wait_for_publish(10)   # oversized
        intruder.publish("triage", {"schema": "ecg.triage/1"}).wait_for_publish(10)
        dev = Device(broker.port, "amb-2")
        dev.publish("triage", good).wait_for_publish(10)
        wait_for(lambda: counts(st.config.database_url)["results"] == 1, 30, "the good result")
        status, q = st.api("GET", "/api/v1/quarantine", token=st.tokens["fleet_admin"])
        assert status == 200 and q["total"] == 4
        assert q["by_reason"] == {"not_json": 1, "foreign_topic": 1, "oversized": 1, "schema": 1}
        assert st.worker_pids() == pids                                # nothing crashed or restarted
        assert st.api("GET", "/api/v1/results")[1]["results"][0]["device_id"] == "amb-2"
        assert dev.got["receipt"] and not intruder.got["receipt"]         # no receipt for what was refused
        dev.close()
        intruder.close()


def test_review_goes_back_to_the_device_and_again_on_birth(tmp_path, database_url, mi_record):
    with MosquittoBroker(tmp_path / "broker") as broker, \
            run_stack(tmp_path / "st", broker.port, database_url, workers=1, station="St Mary's ED") as st:
        dev = Device(broker.port, "amb-1")
        tri, strip = result_messages(*mi_record, device_id="amb-1")
        dev.publish("triage", tri).wait_for_publish(10)
        dev.publish("strip", strip).wait_for_publish(10)
        rid = tri["result"]["id"]
        wait_for(lambda: len(dev.got["receipt"]) >= 2, 30, "receipts")
        assert {r["result_id"] for r in dev.got["receipt"]} == {rid}
        assert dev.got["receipt"][0]["station"] == "St Mary's ED"
        # a viewer may not review; a clinician may
        assert st.api("POST", f"/api/v1/results/{rid}/review", {"verdict": "confirmed"})[0] == 403
        status, rv = st.api("POST", f"/api/v1/results/{rid}/review",
                            {"verdict": "confirmed", "text": "Inferior STEMI. Cath lab activated."},
                            token=st.tokens["clinician"])
        assert status == 201
        got = wait_for(lambda: list(dev.got["review"]), 30, "the review on the device")
        validate(got[0], "review")
        assert got[0]["review_id"] == rv["review_id"] and got[0]["verdict"] == "confirmed"
        assert got[0]["reviewer"] == "Dr Demo Cardio" and got[0]["result_id"] == rid
        wait_for(lambda: st.api("GET", f"/api/v1/results/{rid}")[1]["reviews"][0]["sent_to_device_at"], 30,
                 "sent_to_device_at")
        # the device was in a dead zone and reconnects: its birth brings the review (and receipts) again
        birth = {"schema": "ecg.birth/1", "device_id": "amb-1", "ts": "2026-12-04T10:00:00Z",
                 "software_version": "0.1.0", "capabilities": [], "protocol": "mqtt5", "max_command_bytes": 1,
                 "disclaimer": "Triage aid, not a diagnosis."}
        dev.publish("birth", birth, retain=True).wait_for_publish(10)
        wait_for(lambda: len(dev.got["review"]) >= 2, 30, "the review re-sent on birth")
        assert dev.got["review"][1]["review_id"] == rv["review_id"]
        dev.close()


def test_retained_state_published_before_the_station_started_is_seen(tmp_path, mi_record):
    with MosquittoBroker(tmp_path / "broker") as broker:
        dev = Device(broker.port, "amb-7")
        dev.publish("availability", "online", retain=True).wait_for_publish(10)
        dev.publish("telemetry", {"schema": "ecg.telemetry/1", "device_id": "amb-7", "ts": "2026-12-04T10:00:00Z",
                                  "uptime_s": 5, "outbox_depth": 3}, retain=True).wait_for_publish(10)
        with run_stack(tmp_path / "st", broker.port, workers=1) as st:
            d = wait_for(lambda: [x for x in st.api("GET", "/api/v1/devices")[1]["devices"] if x["device_id"] == "amb-7"
                                  and x["outbox_depth"] == 3], 30, "retained state")[0]
            assert d["online"] is True
            dev.c.disconnect()                                 # clean disconnect: no will; the device says offline
            d2 = Device(broker.port, "amb-7b")
            d2.c.publish("ecg/amb-7/availability", "offline", qos=1, retain=True)   # anonymous broker: test only
            wait_for(lambda: not [x for x in st.api("GET", "/api/v1/devices")[1]["devices"]
                                  if x["device_id"] == "amb-7"][0]["online"], 30, "offline")
            d2.close()


def test_station_on_the_shipped_broker_config_with_its_own_certificate_and_acl(tmp_path, mi_record):
    """deploy/mosquitto (conf + acl) as shipped: the station's ingest connects with its own admin-CA client
    certificate (CN ecg-cloud) on the admin listener, stores a device's result, answers with a receipt --
    and the ACL lets it write nothing but receipts and reviews."""
    import ssl

    from cloud_dashboard.config import CloudConfig, DatabaseConfig, MqttConfig, StationConfig
    from cloud_dashboard.db.migrate import upgrade
    from cloud_dashboard.ingest.worker import IngestWorker
    from test_uplink_security import _make_pki, _passwd, _shipped_conf
    pki = _make_pki(tmp_path, admins=("ecg-cloud",))
    pw = _passwd(tmp_path, {"admin": "adminpw"})
    text, plain, tls_port, admin_port = _shipped_conf(tmp_path, pki, pw)
    url = f"sqlite:///{tmp_path / 'st.sqlite'}"
    upgrade(url)
    cfg = CloudConfig(station=StationConfig(name="St TLS", data_dir=str(tmp_path)), database=DatabaseConfig(url=url),
                      mqtt=MqttConfig(port=admin_port, tls=True, ca_file=pki["ca"], cert_file=pki["ecg-cloud_crt"],
                                      key_file=pki["ecg-cloud_key"]))
    with MosquittoBroker(tmp_path, port=tls_port, raw_config=text) as broker:
        worker = IngestWorker(cfg, 0).start()
        try:
            assert worker.connected.wait(10) and worker.subscribed.wait(10), broker.log_text()[-1500:]
            # the device: fleet-CA certificate CN amb-tls on the device listener
            got: list[dict] = []
            dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="amb-tls", protocol=mqtt.MQTTv5)
            dev.tls_set(ca_certs=pki["ca"], certfile=pki["device_crt"], keyfile=pki["device_key"],
                        cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            dev.on_message = lambda c, u, m: got.append(json.loads(m.payload))
            dev.connect("127.0.0.1", tls_port)
            dev.loop_start()
            dev.subscribe("ecg/amb-tls/receipt", qos=1)
            time.sleep(0.5)
            tri, strip = result_messages(*mi_record, device_id="amb-tls")
            dev.publish("ecg/amb-tls/triage", json.dumps(tri), qos=1).wait_for_publish(10)
            dev.publish("ecg/amb-tls/strip", json.dumps(strip), qos=1).wait_for_publish(10)
            wait_for(lambda: counts(url)["messages"] == 2, 30, "stored over TLS")
            wait_for(lambda: len(got) >= 2, 30, "receipts over TLS")
            assert got[0]["station"] == "St TLS"
            # the station's credentials cannot command a device: the broker refuses the publish
            refused = []
            worker.client.on_publish = lambda c, u, mid, rc, p: refused.append(rc)
            worker.client.publish("ecg/amb-tls/cmd/status", json.dumps({"schema": "ecg.cmd/1"}), qos=1).wait_for_publish(10)
            assert refused and refused[0].is_failure, refused
            dev.loop_stop()
        finally:
            worker.stop()


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path):
    """`ecg-cloud serve` SIGKILLed: its ingest workers stop by themselves (an orphan would fight the next
    supervisor's worker for the same MQTT client id)."""
    import psutil
    with MosquittoBroker(tmp_path / "broker") as broker, run_stack(tmp_path / "st", broker.port, workers=2) as st:
        pids = st.worker_pids()
        assert len(pids) == 2
        st.proc.kill()
        st.proc.wait(10)
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in pids), 30, "orphaned workers to exit")


def test_serve_stops_promptly_with_live_pages_open(tmp_path):
    """SIGTERM while a browser holds the live stream (SSE) open: the station still stops (and its workers)."""
    import httpx
    import psutil
    with MosquittoBroker(tmp_path / "broker") as broker, run_stack(tmp_path / "st", broker.port) as st:
        pids = st.worker_pids()
        got = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream("GET", st.url + "/api/v1/live", headers={"Authorization": f"Bearer {st.token}"},
                                  timeout=60) as r:
                    for line in r.iter_lines():
                        if line.startswith("event: change"):
                            got.set()
            except httpx.HTTPError:
                pass
        threading.Thread(target=listen, daemon=True).start()
        assert got.wait(20), "no live event"
        t0 = time.monotonic()
        st.proc.send_signal(signal.SIGTERM)
        assert st.proc.wait(30) == 0
        assert time.monotonic() - t0 < 20
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_status_command_reports_the_running_station(tmp_path, mi_record, capsys):
    from cloud_dashboard.cli import main
    with MosquittoBroker(tmp_path / "broker") as broker, run_stack(tmp_path / "st", broker.port, workers=2) as st:
        dev = Device(broker.port, "amb-1")
        tri, _ = result_messages(*mi_record, device_id="amb-1")
        dev.publish("triage", tri).wait_for_publish(10)
        wait_for(lambda: counts(st.config.database_url)["results"] == 1, 30, "result")
        capsys.readouterr()
        assert main(["status", "--config", str(st.config_path), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert doc["healthy"] and doc["results"] == 1 and doc["unreviewed_suspected_mi"] == 1
        assert len(doc["workers"]) == 2 and all(w["subscribed"] for w in doc["workers"])
        dev.close()
