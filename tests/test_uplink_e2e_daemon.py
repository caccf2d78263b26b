"""End to end with the REAL daemon (edge_app.daemon via `ecg-edge run`), a real mosquitto, the real front-end
simulator and the real model: fleet listing, signed model rollout through `ecg-fleet rollout`, a tampered
bundle refused, rollback — and the daemon actually switches the model it runs (reported in its status)."""
from __future__ import annotations

import json
import time

import pytest

from edge_app.control_socket import call
from cloud_dashboard.fleet_cli import FleetClient, install_args, keygen, load_bundle, main as fleet_main, sign_bundle
from mosquitto_broker import MosquittoBroker
from test_daemon_e2e import NORM_RECORD, _config, _sim, _sock, _start_daemon, _stop, _wait_ready
from test_uplink_model import SHIPPED, needs_model, new_version_bundle
from mqtt_helpers import Collector, retained
from edge_app.uplink import schemas


def _status(tmp_path) -> dict:
    return call(_sock(tmp_path), "status")["result"]


@needs_model
@pytest.mark.slow
def test_daemon_takes_a_signed_rollout_refuses_tampering_and_rolls_back(tmp_path, capsys):
    keygen(str(tmp_path / "fleet.key"), str(tmp_path / "fleet.pub"))
    shipped = json.loads(SHIPPED.read_text())["model_version"]
    bundle = new_version_bundle(tmp_path, "9.9.9-e2e")
    with MosquittoBroker(tmp_path / "broker") as broker:
        col = Collector(broker.port, "ecg/test-dev/#")
        sim = _sim(tmp_path, NORM_RECORD, speed=4.0)
        cfg = _config(tmp_path, extra=f'[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\ntelemetry_interval_s = 1\n'
                                      f'model_public_key = "{tmp_path / "fleet.pub"}"\n')
        proc = _start_daemon(cfg, tmp_path)
        try:
            _wait_ready(proc, tmp_path)
            deadline = time.monotonic() + 20
            while not _status(tmp_path)["uplink"].get("connected"):
                assert time.monotonic() < deadline, "uplink never connected"
                time.sleep(0.1)
            assert _status(tmp_path)["model"]["version"] == shipped

            assert fleet_main(["--port", str(broker.port), "--json", "devices", "--wait", "0.5"]) == 0
            devices = json.loads(capsys.readouterr().out)
            assert devices["test-dev"]["availability"] == "online"
            assert devices["test-dev"]["birth"]["model"]["version"] == shipped

            rc = fleet_main(["--port", str(broker.port), "--json", "rollout", "--private-key",
                             str(tmp_path / "fleet.key"), "--manifest", str(bundle), "--timeout", "90", "test-dev"])
            summary = json.loads(capsys.readouterr().out)
            assert rc == 0 and summary["took"] == ["test-dev"], summary
            deadline = time.monotonic() + 10
            while _status(tmp_path)["model"]["version"] != "9.9.9-e2e":
                assert time.monotonic() < deadline, "daemon did not switch to the installed model"
                time.sleep(0.1)
            time.sleep(0.3)
            assert json.loads(retained(broker.port, "ecg/test-dev/birth"))["model"]["version"] == "9.9.9-e2e"
            # results keep flowing, analysed by the installed model
            deadline = time.monotonic() + 60
            while not any("9.9.9-e2e" in json.dumps(m["result"].get("model")) for m in col.on("triage")):
                assert time.monotonic() < deadline, f"no result from the new model: {col.on('triage')[-1:]}"
                time.sleep(0.2)

            # periodic telemetry (every 1 s here) carries the daemon's own view once results exist
            deadline = time.monotonic() + 15
            while not any(t.get("inference_ms") for t in col.on("telemetry")):
                assert time.monotonic() < deadline, f"telemetry never carried inference_ms: {col.on('telemetry')[-1:]}"
                time.sleep(0.2)

            with FleetClient(port=broker.port) as fleet:
                model, manifest, files = load_bundle(str(new_version_bundle(tmp_path, "9.9.9-evil")))
                args = install_args(model, manifest, files, sign_bundle(str(tmp_path / "fleet.key"), model,
                                                                        manifest, files))
                flipped = bytearray(model)
                flipped[1000] ^= 0x40
                import base64
                args["model_b64"] = base64.b64encode(bytes(flipped)).decode()
                r = fleet.command("test-dev", "model/install", args, timeout=90)
                assert not r["ok"] and r["error"]["code"] == "model_rejected"
                assert _status(tmp_path)["model"]["version"] == "9.9.9-e2e", "tampered bundle changed the model"

                from cloud_dashboard.fleet_cli import rollback_args   # rollback is a signed order (issue 14)
                r = fleet.command("test-dev", "model/rollback",
                                  rollback_args(str(tmp_path / "fleet.key"), "9.9.9-e2e", shipped), timeout=30)
                assert r["ok"], r
                deadline = time.monotonic() + 10
                while _status(tmp_path)["model"]["version"] != shipped:
                    assert time.monotonic() < deadline, "daemon did not roll back"
                    time.sleep(0.1)
                st = fleet.command("test-dev", "status", timeout=10)
                assert st["ok"] and st["result"]["model"]["version"] == shipped
        finally:
            _stop(proc)
            sim.stop()
        time.sleep(0.3)
        assert retained(broker.port, "ecg/test-dev/availability") == b"offline"
        col.close()
    # everything the real daemon published matches the written schemas
    seen = set()
    for leaf, schema in schemas.BY_LEAF.items():
        if leaf in ("cmd", "reply"):
            continue
        for doc in col.on(leaf):
            schemas.validate(doc, schema)
            seen.add(leaf)
    for doc in col.on("reply"):
        schemas.validate(doc, "reply")
    assert {"birth", "telemetry", "config/reported", "triage"} <= seen, seen
    # the birth names the front end the device reported; telemetry carries what only the daemon knows
    births = [b for b in col.on("birth") if (b.get("frontend") or {}).get("info")]
    assert births and births[-1]["frontend"]["info"]["device_id"], col.on("birth")[-1:]
    tele = [t for t in col.on("telemetry") if t.get("frontend_status") == "streaming"]
    assert tele, [(t["ts"], t.get("frontend_status"), t["counters"]["blocks"]) for t in col.on("telemetry")]
    assert any(t.get("signal_quality") in ("good", "acceptable") and t.get("inference_ms") for t in tele), \
        [(t["ts"], t.get("signal_quality"), t.get("inference_ms"), t["counters"]["blocks"]) for t in tele]
    audit = (tmp_path / "state" / "audit.jsonl").read_text()
    assert audit.count("model_changed") == 2
