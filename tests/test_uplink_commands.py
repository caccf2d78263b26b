"""Fleet commands end to end over a REAL mosquitto: good ones apply and report; malformed ones change nothing."""
from __future__ import annotations

import json
import time

import pytest

from edge_app.uplink import schemas
from cloud_dashboard.fleet_cli import FleetClient, main as fleet_main
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from device_helpers import real_device
from edge_app.command_router import CommandRouter
from edge_app.sinks.uplink import UplinkSink
from mqtt_helpers import Collector, retained

MAX_CMD = 64 * 1024


@pytest.fixture
def rig(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        device = real_device(tmp_path, "amb-cmd")
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "reconnect_min_s": 0.1,
                                    "telemetry_interval_s": 3600, "max_command_bytes": MAX_CMD})
        up = Uplink(cfg, "amb-cmd", tmp_path / "o.db", control=device.operations)
        UplinkSink(up, device.state.store, device.state.alarms).subscribe(device.bus)   # as the daemon wires it
        up.start()
        assert up.wait_connected(10)
        col = Collector(broker.port, "ecg/#")
        fleet = FleetClient(port=broker.port, admin="dr-test")
        try:
            yield broker, device, up, fleet, col
        finally:
            fleet.close()
            col.close()
            up.stop()
            device.close()


def snapshot(device) -> tuple:
    """Everything a command could change on the device: config, patient, alarms, the audit trail."""
    return (device.state.runtime.version(), device.operations.get_patient(), device.operations.alarms(),
            len(device.audit_kinds()))


def validate(doc: dict, schema: str) -> None:
    schemas.validate(doc, schema)


def test_good_commands_apply_and_report(rig):
    broker, device, up, fleet, col = rig
    alarm = device.state.alarms.raise_condition("suspected_mi", "physiological", "high", "Suspected MI")
    r = fleet.command("amb-cmd", "status")
    assert r["ok"] and r["result"]["device_id"] == "amb-cmd" and r["result"]["alarms_active"][0]["id"] == alarm.id
    validate(r, "reply")
    r = fleet.command("amb-cmd", "config/get")
    assert r["ok"] and r["result"]["signal"]["mains_hz"] == 50
    version0 = r["result"]["config_version"]

    r = fleet.command("amb-cmd", "config/set", {"changes": {"model.thresholds.MI": 0.35, "signal.mains_hz": 60}})
    assert r["ok"] and r["result"]["by"] == "dr-test"
    version1 = r["result"]["config"]["config_version"]
    assert version1 != version0 and device.state.runtime.current.get("signal.mains_hz") == 60
    time.sleep(0.3)
    reported = json.loads(retained(broker.port, "ecg/amb-cmd/config/reported"))
    validate(reported, "config_reported")
    assert reported["config_version"] == version1 and reported["config"]["model"]["thresholds"]["MI"] == 0.35

    # a change made locally (control socket) is reported on MQTT too
    local = CommandRouter(device.operations, "socket").execute("config/set", {"changes": {"windows.stride_s": 2}},
                                                               "crew")
    time.sleep(0.3)
    reported = json.loads(retained(broker.port, "ecg/amb-cmd/config/reported"))
    assert reported["config_version"] == local["config"]["config_version"] != version1
    assert reported["config"]["windows"]["stride_s"] == 2

    r = fleet.command("amb-cmd", "patient/set", {"age": 64, "sex": "female"})
    assert r["ok"] and device.operations.get_patient() == {"age": 64.0, "sex": "female"}
    r = fleet.command("amb-cmd", "patient/set", {"age": 65})                 # an omitted field keeps its value
    assert r["ok"] and device.operations.get_patient() == {"age": 65.0, "sex": "female"}
    r = fleet.command("amb-cmd", "patient/clear")
    assert r["ok"] and device.operations.get_patient() == {"age": "unknown", "sex": "unknown"}
    r = fleet.command("amb-cmd", "alarm/ack", {"alarm_id": alarm.id})
    assert r["ok"] and device.operations.alarms()[0]["acknowledged_by"] == "dr-test"
    r = fleet.command("amb-cmd", "alarm/ack", {"alarm_id": alarm.id})
    assert not r["ok"] and r["error"]["code"] == "conflict" and "dr-test" in r["error"]["message"]
    kinds = device.audit_kinds()
    assert [k for k in kinds if k in ("config_change", "patient_set", "patient_cleared", "alarm_ack")] == [
        "config_change", "config_change", "patient_set", "patient_set", "patient_cleared", "alarm_ack"]

    # every payload the device produced matches its written schema
    for leaf in ("birth", "config/reported"):
        for doc in col.on(leaf):
            validate(doc, schemas.BY_LEAF[leaf])
    for doc in col.on("reply"):
        validate(doc, "reply")


MALFORMED = [
    # (command, raw payload or args, expected error code)
    ("status", b"{not json", "bad_json"),
    ("status", b"\xff\xfe\x00", "bad_json"),
    ("status", b"[1, 2, 3]", "bad_request"),
    ("status", b'{"args": [], "correlation_id": "x1"}', "bad_request"),
    ("status", b'{"args": {}, "surprise": 1}', "bad_request"),
    ("status", b'{"args": {"verbose": true}}', "bad_request"),
    ("config/set", b'{"args": {"changes": "mi=0.9"}}', "bad_request"),
    ("config/set", b'{"args": {"changes": {}}}', "bad_request"),
    ("config/set", {"changes": {"model.thresholds.MI": 1.5}}, "invalid_config"),
    ("config/set", {"changes": {"model.thresholds.MI": 0.2, "signal.mains_hz": 55}}, "invalid_config"),
    ("config/set", {"changes": {"triage.nonexistent": 1}}, "invalid_config"),
    ("config/set", {"changes": {"windows.stride_s": "2"}}, "invalid_config"),
    ("config/set", {"changes": {"mqtt.host": "elsewhere"}}, "invalid_config"),
    ("patient/set", {"age": "old", "sex": "female"}, "bad_request"),
    ("patient/set", {"age": 64, "sex": "x"}, "bad_request"),
    ("patient/set", {"age": -3}, "bad_request"),
    ("patient/set", {"age": 131}, "bad_request"),
    ("patient/set", {}, "bad_request"),
    ("patient/set", b'{"args": {"age": NaN}}', "bad_json"),
    ("patient/set", {"age": 40, "weight": 80}, "bad_request"),
    ("alarm/ack", {"alarm_id": 17}, "bad_request"),
    ("alarm/ack", {"alarm_id": "no-such-alarm"}, "not_found"),
    ("model/install", {"model_b64": "!!!", "manifest_b64": "e30=", "signature_b64": "AA=="}, "bad_request"),
    ("model/install", {"model_b64": "AA=="}, "bad_request"),
    ("model/rollback", {}, "unavailable"),  # no model store on this device
    ("results/latest", {}, "unknown_command"),   # a local (control socket) command, not served over MQTT
    ("reboot", {}, "unknown_command"),
    ("config/set/extra", {}, "unknown_command"),
    ("status", b'{"args": {}, "pad": "' + b"x" * MAX_CMD + b'"}', "too_large"),
]


def test_malformed_commands_get_error_replies_and_change_nothing(rig):
    broker, device, up, fleet, col = rig
    before = snapshot(device)
    for name, payload, code in MALFORMED:
        if isinstance(payload, bytes):
            r = fleet.command("amb-cmd", name, payload=payload, timeout=5)
        else:
            r = fleet.command("amb-cmd", name, payload, timeout=5)
        assert r["ok"] is False, (name, payload)
        assert r["error"]["code"] == code, (name, payload, r["error"])
        assert r["error"]["message"]
        validate(r, "reply")
        assert snapshot(device) == before, f"{name} {payload!r} changed device state"
    r = fleet.command("amb-cmd", "config/set", {"changes": {"model.thresholds.MI": 1.5}})
    assert r["error"]["details"]["key"] == "model.thresholds.MI" and "fix" in r["error"]["details"]
    # the device is still healthy and answers
    assert fleet.command("amb-cmd", "status")["ok"]
    assert up.commands.refused >= len(MALFORMED)


def test_mqtt311_device_replies_with_correlation_id_in_json(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        device = real_device(tmp_path, "old-dev")
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "protocol": "3.1.1",
                                    "telemetry_interval_s": 3600})
        up = Uplink(cfg, "old-dev", tmp_path / "o.db", control=device.operations)
        up.start()
        try:
            assert up.wait_connected(10)
            with FleetClient(port=broker.port) as fleet:
                r = fleet.command("old-dev", "patient/set", {"age": 70})
                assert r["ok"] and device.operations.get_patient()["age"] == 70 and r["correlation_id"]
                r = fleet.command("old-dev", "nope", {})
                assert r["error"]["code"] == "unknown_command"
        finally:
            up.stop()
            device.close()


def test_fleet_cli_devices_and_cmd(rig, capsys):
    broker, device, up, fleet, col = rig
    up.publish_telemetry({"signal_quality": "good", "frontend_status": "streaming"})
    time.sleep(0.3)
    assert fleet_main(["--port", str(broker.port), "--json", "devices", "--wait", "0.5"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert devices["amb-cmd"]["availability"] == "online"
    assert devices["amb-cmd"]["telemetry"]["frontend_status"] == "streaming"
    validate(devices["amb-cmd"]["telemetry"], "telemetry")
    validate(devices["amb-cmd"]["birth"], "birth")
    assert fleet_main(["--port", str(broker.port), "devices", "--wait", "0.5"]) == 0
    assert "amb-cmd" in capsys.readouterr().out
    rc = fleet_main(["--port", str(broker.port), "--json", "cmd", "amb-cmd", "config/set", "--json-args",
                     '{"changes": {"signal.mains_hz": 60}}'])
    assert rc == 0 and json.loads(capsys.readouterr().out)["ok"]
    assert device.state.runtime.current.get("signal.mains_hz") == 60
    rc = fleet_main(["--port", str(broker.port), "cmd", "amb-cmd", "config/set", "--json-args",
                     '{"changes": {"signal.mains_hz": 61}}'])
    assert rc == 1 and "invalid_config" in capsys.readouterr().out
    rc = fleet_main(["--port", str(broker.port), "cmd", "ghost-device", "status", "--timeout", "0.5"])
    assert rc == 2 and "no reply" in capsys.readouterr().err
    from mosquitto_broker import free_port
    rc = fleet_main(["--port", str(free_port()), "devices"])
    assert rc == 2 and "no connection" in capsys.readouterr().err
    rc = fleet_main(["--port", str(broker.port), "cmd", "amb-cmd", "status", "--json-args", "{oops"])
    assert rc == 2 and "not JSON" in capsys.readouterr().err


def test_fleet_cli_watch_shows_results_and_alarms(rig, capsys):
    broker, device, up, fleet, col = rig
    import threading
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("rc", fleet_main(
        ["--port", str(broker.port), "--json", "watch", "--seconds", "2"])))
    t.start()
    time.sleep(0.8)
    up.publish_result({"triage": "suspected MI", "probabilities": {"MI": 0.91}}, "high")
    up.publish_alarm({"type": "technical", "code": "lead_off", "leads": ["V2"]}, "technical")
    t.join(10)
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert out["rc"] == 0
    assert {l["topic"].rsplit("/", 1)[1] for l in lines} == {"triage", "alarm"}
    for l in lines:
        validate(l["payload"], schemas.BY_LEAF[l["topic"].rsplit("/", 1)[1]])


def test_watch_lines_describe_daemon_results_and_alarms():
    from cloud_dashboard.fleet_cli import describe
    assert describe({"result": {"triage_level": "high", "triage": {"level": "high"}, "heart_rate_bpm": 88.2,
                                "probabilities": {"MI": 0.91, "NORM": 0.05}, "quality": {"verdict": "good"}}}) \
        == "triage high, top MI 0.91, HR 88, quality good"
    assert describe({"result": {"triage_level": "cannot_interpret", "probabilities": None,
                                "quality": {"verdict": "unusable"}}}) \
        == "triage cannot_interpret, cannot interpret, quality unusable"
    assert describe({"alarm": {"kind": "technical", "code": "lead_off", "message": "V2 off"}}) \
        == "technical lead_off: V2 off"
