"""Config: defaults for everything, validation naming key and fix, runtime changes, TOML round trip."""
from __future__ import annotations

import pytest

from edge_app.config import apply_changes, config_from_dict, default_toml, load_config, to_toml
from edge_app.errors import ConfigError


def test_defaults_cover_every_section():
    cfg = config_from_dict({})
    d = cfg.to_dict()
    for section in ("device", "frontend", "signal", "windows", "model", "triage", "patient", "storage",
                    "mqtt", "display", "control", "logging"):
        assert section in d
    assert cfg.get("windows.length_s") == 10 and cfg.get("windows.stride_s") == 5
    assert cfg.get("frontend.baudrate") == 460800 and cfg.get("mqtt.enabled") is False
    assert cfg.manifest_path.name == "manifest.json" and cfg.manifest_path.exists()
    assert cfg.patient == (None, None)
    assert cfg.control_socket == cfg.state_dir / "control.sock"


def test_default_toml_round_trips(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(default_toml())
    cfg = load_config(p)
    assert cfg.to_dict() == config_from_dict({}).to_dict()
    cfg2 = config_from_dict({"model": {"thresholds": {"MI": 0.3}}, "patient": {"age": 63, "sex": "female"}})
    p.write_text(to_toml(cfg2))
    assert load_config(p).to_dict() == cfg2.to_dict()


@pytest.mark.parametrize("raw,key,fix_word", [
    ({"windows": {"stride_s": 0}}, "windows.stride_s", "1 to 10"),
    ({"windows": {"stride_s": 11}}, "windows.stride_s", "1 to 10"),
    ({"windows": {"length_s": 5}}, "windows.length_s", "10"),
    ({"frontend": {"port": 3}}, "frontend.port", "serial device"),
    ({"frontend": {"fs": True}}, "frontend.fs", "integer"),
    ({"frontend": {"baudrate": 9600}}, "frontend.baudrate", "460800"),
    ({"frontend": {"prot": "/dev/x"}}, "frontend.prot", "spelling"),
    ({"signal": {"mains_hz": 55}}, "signal.mains_hz", "60"),
    ({"patient": {"age": -3}}, "patient.age", "unknown"),
    ({"patient": {"sex": "x"}}, "patient.sex", "female"),
    ({"device": {"id": "a/b"}}, "device.id", "letters"),
    ({"storage": {"max_bytes": 10}}, "storage.max_bytes", "1048576"),
    ({"model": {"thresholds": {"XYZ": 0.3}}}, "model.thresholds.XYZ", "NORM"),
    ({"model": {"thresholds": {"MI": 0}}}, "model.thresholds.MI", "between 0 and 1"),
    ({"model": {"backend": "coral"}}, "model.backend", "litert"),
    ({"mqtt": {"port": 0}}, "mqtt.port", "1883"),
    ({"mqtt": {"hots": "x"}}, "mqtt.hots", "known keys"),
    ({"display": {"port": 70000}}, "display.port", "65535"),
    ({"frontend": 5}, "frontend", "section header"),
    ({"nonsense": {}}, "nonsense", "known sections"),
])
def test_invalid_values_name_key_and_fix(raw, key, fix_word):
    with pytest.raises(ConfigError) as ei:
        config_from_dict(raw)
    e = ei.value
    assert e.key == key, str(e)
    assert e.fix and "Fix:" in str(e)
    if fix_word:
        assert fix_word in e.fix or fix_word in e.problem, str(e)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[windows\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(p)


def test_relative_manifest_is_resolved_against_the_config_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nmanifest = "models/manifest.json"\n')
    assert load_config(p).manifest_path == tmp_path / "models" / "manifest.json"


def test_runtime_changes_are_validated_and_restart_only_keys_refused():
    cfg = config_from_dict({})
    new, diff = apply_changes(cfg, {"windows.stride_s": 2, "model": {"thresholds": {"MI": 0.3}}})
    assert new.get("windows.stride_s") == 2 and new.thresholds == {"MI": 0.3}
    assert diff["windows.stride_s"] == (5, 2)
    assert cfg.get("windows.stride_s") == 5          # the original is untouched
    new2, _ = apply_changes(new, {"model.thresholds.CD": 0.6})
    assert new2.thresholds == {"MI": 0.3, "CD": 0.6}
    with pytest.raises(ConfigError) as ei:
        apply_changes(cfg, {"frontend.port": "/dev/ttyUSB0"})
    assert ei.value.key == "frontend.port" and "restart" in ei.value.fix
    with pytest.raises(ConfigError) as ei:
        apply_changes(cfg, {"windows.stride_s": 50})
    assert ei.value.key == "windows.stride_s"
    with pytest.raises(ConfigError):
        apply_changes(cfg, {"stride": 5})
