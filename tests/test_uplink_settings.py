"""[mqtt] validation: every problem names the key "mqtt.<name>" and a fix."""
from __future__ import annotations

import pytest

from edge_app.errors import ConfigError
from edge_app.uplink.settings import MqttConfig
from edge_app.uplink.topics import Topics, check_device_id


def test_defaults_are_a_disabled_loopback_link():
    c = MqttConfig.from_dict({})
    assert (c.enabled, c.host, c.port, c.prefix, c.keepalive_s, c.tls) == (False, "127.0.0.1", 1883, "ecg", 30, False)
    assert MqttConfig.from_dict(None) == c
    assert MqttConfig.from_dict({"protocol": 5}).protocol == "5"
    assert MqttConfig.from_dict({"telemetry_interval_s": 10}).telemetry_interval_s == 10.0


@pytest.mark.parametrize("raw, key", [
    ({"port": 70000}, "mqtt.port"),
    ({"port": "1883"}, "mqtt.port"),
    ({"enabled": "yes"}, "mqtt.enabled"),
    ({"prefix": "ecg/#"}, "mqtt.prefix"),
    ({"prefix": "/ecg"}, "mqtt.prefix"),
    ({"host": ""}, "mqtt.host"),
    ({"keepalive_s": 1}, "mqtt.keepalive_s"),
    ({"protocol": "4"}, "mqtt.protocol"),
    ({"tls": True}, "mqtt.ca_file"),
    ({"ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file"),
    ({"password": "x"}, "mqtt.username"),
    ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "mqtt.reconnect_max_s"),
    ({"max_command_bytes": 10}, "mqtt.max_command_bytes"),
    ({"outbox_max_bytes": 10}, "mqtt.outbox_max_bytes"),
    ({"model_public_key": "/nonexistent.pem"}, "mqtt.model_public_key"),
    ({"telemetry_interval_s": True}, "mqtt.telemetry_interval_s"),
    ({"brokr": "x"}, "mqtt.brokr"),
])
def test_invalid_values_name_the_key_and_the_fix(raw, key):
    with pytest.raises(ConfigError) as exc:
        MqttConfig.from_dict(raw)
    assert exc.value.key == key
    assert exc.value.fix and exc.value.problem


def test_client_certificate_needs_both_halves_and_tls(tmp_path):
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    with pytest.raises(ConfigError) as exc:
        MqttConfig.from_dict({"tls": True, "ca_file": str(pem), "cert_file": str(pem)})
    assert exc.value.key == "mqtt.key_file"
    with pytest.raises(ConfigError) as exc:
        MqttConfig.from_dict({"cert_file": str(pem), "key_file": str(pem)})
    assert exc.value.key == "mqtt.tls"
    ok = MqttConfig.from_dict({"tls": True, "ca_file": str(pem), "cert_file": str(pem), "key_file": str(pem)})
    assert ok.tls


def test_password_file_is_read_and_redacted(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    c = MqttConfig.from_dict({"username": "amb-1", "password_file": str(pw)})
    assert c.read_password() == "s3cret"
    c2 = MqttConfig.from_dict({"username": "amb-1", "password": "s3cret"})
    d = c2.to_dict(redact=True)
    assert d["password"] == "***" and "s3cret" not in repr(d)
    assert MqttConfig.from_dict(c2.to_dict()) == c2, "to_dict must round-trip for the daemon's config code"


def test_device_ids_are_single_topic_levels():
    assert check_device_id("amb-07") == "amb-07"
    for bad in ("", "a/b", "a+b", "#", "x" * 65, "-lead"):
        with pytest.raises(ValueError):
            check_device_id(bad)
    t = Topics("ecg", "amb-07")
    assert t.command_name("ecg/amb-07/cmd/config/set") == "config/set"
    assert t.command_name("ecg/amb-07/cmd/config/set/reply") is None
    assert t.command_name("ecg/amb-08/cmd/status") is None


def test_builtin_schema_validator_agrees_with_jsonschema_and_rejects_bad_payloads():
    from edge_app.uplink import schemas
    good = {"schema": "ecg.triage/1", "msg_id": "a" * 32, "device_id": "amb-1", "priority": "high",
            "created_at": "2026-11-30T04:40:12.345Z", "sent_at": "2026-11-30T04:40:13.000Z", "historical": False,
            "age_s": 0.6, "seq": 3, "disclaimer": "Triage aid, not a diagnosis.", "result": {}}
    bad = [dict(good, priority="urgent"), dict(good, msg_id="xyz"), dict(good, seq="3"), dict(good, extra=1),
           {k: v for k, v in good.items() if k != "result"}, dict(good, historical=1), dict(good, age_s=-1)]
    reply_bad = {"schema": "ecg.reply/1", "device_id": "amb-1", "command": "status", "correlation_id": None,
                 "ok": True, "ts": 1.0}  # ok without result: violates oneOf
    for use in (True, False):
        schemas.validate(good, "triage", use_jsonschema=use)
        for doc in bad:
            with pytest.raises(schemas.SchemaError):
                schemas.validate(doc, "triage", use_jsonschema=use)
        with pytest.raises(schemas.SchemaError):
            schemas.validate(reply_bad, "reply", use_jsonschema=use)
