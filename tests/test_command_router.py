"""The command router on the device's real operations (no model, no daemon, no broker): one set of names, one
validation and one error shape for the control socket, MQTT and the bedside page; a refused command changes
nothing; the control socket's envelope over a real unix socket."""
from __future__ import annotations

import pytest

from device_helpers import real_device
from edge_app.command_router import COMMANDS, CommandError, CommandRouter, names
from edge_app.control_socket import ControlServer, call
from edge_app.patient import AGE_MAX, validate_patient
from edge_app.uplink.topics import COMMANDS as MQTT_TOPIC_COMMANDS


@pytest.fixture()
def device(tmp_path):
    dev = real_device(tmp_path)
    yield dev
    dev.close()


def _state(dev) -> tuple:
    return (dev.state.runtime.version(), dev.operations.get_patient(), dev.operations.alarms(),
            len(dev.audit_kinds()))


def test_each_transport_serves_its_commands_from_one_table():
    assert set(names("mqtt")) | {"model/chunk"} == set(MQTT_TOPIC_COMMANDS)    # the birth's capabilities
    assert names("http") == ("patient/set", "patient/clear", "alarm/ack")
    assert set(names("socket")) == set(COMMANDS) - {"model/install", "model/rollback"}
    with pytest.raises(ValueError):
        CommandRouter(None, "carrier-pigeon")


@pytest.mark.parametrize("age, sex, ok", [
    (63, "female", (63.0, "female")), (0, None, (0.0, None)), (AGE_MAX, "MALE", (130.0, "male")),
    ("unknown", "unknown", (None, None)), (None, " Female ", (None, "female")),
    (-0.5, None, None), (AGE_MAX + 0.5, None, None), ("63", None, None), (True, None, None),
    (float("nan"), None, None), (None, "f", None), (None, 0, None), (None, "x", None),
])
def test_the_one_patient_validator(age, sex, ok):
    if ok is None:
        with pytest.raises(ValueError):
            validate_patient(age, sex)
    else:
        ctx = validate_patient(age, sex)
        assert (ctx.age, ctx.sex) == ok


REFUSED = [
    # (transport, name, args, code)
    ("socket", "reboot", {}, "unknown_command"),
    ("http", "config/set", {"changes": {"windows.stride_s": 2}}, "unknown_command"),   # the page cannot
    ("mqtt", "results/latest", {}, "unknown_command"),
    ("socket", "status", [], "bad_request"),
    ("socket", "status", {"verbose": True}, "bad_request"),
    ("socket", "config/set", {}, "bad_request"),
    ("socket", "config/set", {"changes": {}}, "bad_request"),
    ("socket", "config/set", {"changes": {"windows.stride_s": 2, "triage.hr_low_bpm": 5}}, "invalid_config"),
    ("mqtt", "config/set", {"changes": {"mqtt.host": "x"}}, "invalid_config"),
    ("http", "patient/set", {}, "bad_request"),
    ("http", "patient/set", {"age": 131}, "bad_request"),
    ("mqtt", "patient/set", {"age": 40, "weight": 80}, "bad_request"),
    ("socket", "patient/set", {"sex": "f"}, "bad_request"),
    ("http", "alarm/ack", {"alarm_id": ""}, "bad_request"),
    ("mqtt", "alarm/ack", {"alarm_id": "nope"}, "not_found"),
    ("socket", "results/latest", {"n": 0}, "bad_request"),
    ("mqtt", "model/rollback", {}, "unavailable"),
    ("mqtt", "model/install", {"model_b64": "!!", "manifest_b64": "e30=", "signature_b64": "AA=="}, "bad_request"),
]


@pytest.mark.parametrize("transport, name, args, code", REFUSED)
def test_refused_commands_have_one_error_shape_and_change_nothing(device, transport, name, args, code):
    router = CommandRouter(device.operations, transport)
    before = _state(device)
    reply = router.handle(name, args, by="tester")
    assert reply["ok"] is False and reply["error"]["code"] == code and reply["error"]["message"]
    assert set(reply["error"]) <= {"code", "message", "details"}
    assert _state(device) == before


def test_good_commands_reach_the_real_device(device):
    router = CommandRouter(device.operations, "socket")
    alarm = device.state.alarms.raise_condition("no_device", "technical", "medium", "no front end")
    assert router.execute("patient/set", {"age": 70, "sex": "male"}, "crew") == {"age": 70.0, "sex": "male"}
    assert router.execute("patient/set", {"age": 71}, "crew") == {"age": 71.0, "sex": "male"}   # sex kept
    changed = router.execute("config/set", {"changes": {"windows.stride_s": 2}}, "crew")
    assert changed["applied"] and changed["config"]["windows"]["stride_s"] == 2
    acked = router.execute("alarm/ack", {"alarm_id": alarm.id}, "crew-7")
    assert acked["acknowledged_by"] == "crew-7"
    with pytest.raises(CommandError) as e:
        router.execute("alarm/ack", {"alarm_id": alarm.id}, "crew-8")
    assert e.value.code == "conflict" and e.value.http_status == 409 and "crew-7" in e.value.message
    assert router.execute("alarms/list", {}, "crew")[0]["id"] == alarm.id
    assert router.execute("results/latest", {"n": 3}, "crew") == []
    assert router.execute("patient/clear", {}, "crew") == {"age": "unknown", "sex": "unknown"}
    kinds = device.audit_kinds()
    assert kinds.count("patient_set") == 2 and "config_change" in kinds and "alarm_ack" in kinds
    assert "patient_cleared" in kinds


def test_control_socket_envelope_over_a_real_unix_socket(device, tmp_path):
    server = ControlServer(tmp_path / "control.sock", CommandRouter(device.operations, "socket"))
    server.start()
    try:
        ok = call(tmp_path / "control.sock", "patient/set", age=55, sex="female")
        assert ok == {"ok": True, "result": {"age": 55.0, "sex": "female"}}
        bad = call(tmp_path / "control.sock", "patient/set", age=300)
        assert bad["ok"] is False and bad["error"]["code"] == "bad_request" and "130" in bad["error"]["message"]
        unknown = call(tmp_path / "control.sock", "set_patient", age=55)     # one set of names, no aliases
        assert unknown["error"]["code"] == "unknown_command" and "patient/set" in unknown["error"]["message"]
        alarm = device.state.alarms.raise_condition("no_device", "technical", "medium", "no front end")
        acked = call(tmp_path / "control.sock", "alarm/ack", alarm_id=alarm.id, by="crew-3")
        assert acked["ok"] and acked["result"]["acknowledged_by"] == "crew-3"
        with pytest.raises(RuntimeError):                      # a second daemon on the same socket is refused
            ControlServer(tmp_path / "control.sock", CommandRouter(device.operations, "socket")).start()
    finally:
        server.stop()
    with pytest.raises(ConnectionError):
        call(tmp_path / "control.sock", "status")
