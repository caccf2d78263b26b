"""Runtime configuration on its own (no model, no daemon): all-or-nothing validated changes, persisted overrides
re-applied at the next start, MQTT refused while running, secrets masked; and Pipeline.apply takes the
new settings without touching its fields from outside."""
from __future__ import annotations

import json

import pytest

from edge_app.config import config_from_dict
from edge_app.errors import ConfigError
from edge_app.pipeline import Pipeline, PipelineSettings, _resampler_factory
from edge_app.windowing import WindowAssembler
from edge_app.runtime_config import RuntimeConfig


def _base(tmp_path):
    return config_from_dict({"device": {"id": "rc-dev"}, "storage": {"state_dir": str(tmp_path)},
                             "mqtt": {"enabled": False, "password": "s3cret", "username": "dev"}})


def test_a_valid_change_is_applied_persisted_and_versioned(tmp_path):
    rc = RuntimeConfig(_base(tmp_path), tmp_path / "config-overrides.json")
    v0 = rc.version()
    diff = rc.change({"windows.stride_s": 2, "model": {"thresholds": {"MI": 0.4}}})
    assert diff["windows.stride_s"] == (5, 2) and rc.current.get("windows.stride_s") == 2
    assert rc.current.thresholds == {"MI": 0.4} and rc.version() != v0
    saved = json.loads((tmp_path / "config-overrides.json").read_text())
    assert saved["windows.stride_s"] == 2
    again = RuntimeConfig(_base(tmp_path), tmp_path / "config-overrides.json")     # the next start
    again.load_overrides()
    assert again.current.get("windows.stride_s") == 2 and again.version() == rc.version()


@pytest.mark.parametrize("changes, key", [
    ({"windows.stride_s": 2, "triage.hr_low_bpm": 500}, "triage.hr_low_bpm"),     # one bad key: nothing applied
    ({"windows.length_s": 5}, "windows.length_s"),                                 # needs a restart
    ({"mqtt.host": "evil"}, "mqtt.host"),
    ({"nosuch.key": 1}, "nosuch.key"),
    ({}, "<changes>"),
])
def test_an_invalid_change_names_the_key_and_changes_nothing(tmp_path, changes, key):
    rc = RuntimeConfig(_base(tmp_path), tmp_path / "config-overrides.json")
    before = rc.version()
    with pytest.raises(ConfigError) as e:
        rc.change(changes)
    assert e.value.key == key and e.value.fix
    assert rc.version() == before and not (tmp_path / "config-overrides.json").exists()


def test_a_corrupt_overrides_file_is_ignored_and_secrets_are_masked(tmp_path):
    (tmp_path / "config-overrides.json").write_text('{"windows.stride_s": 99}')
    rc = RuntimeConfig(_base(tmp_path), tmp_path / "config-overrides.json")
    rc.load_overrides()
    assert rc.current.get("windows.stride_s") == 5
    shown = rc.redacted()
    assert shown["mqtt"]["password"] == "***" and shown["config_version"] == rc.version()


def test_pipeline_apply_takes_new_settings_but_not_a_new_window_length():
    pipe = Pipeline(None, PipelineSettings(), "dev")    # settings only: no model is needed to apply them
    pipe.apply(PipelineSettings(stride_s=2.0, threshold_overrides={"MI": 0.3}, hr_high_bpm=170))
    assert pipe.settings.stride_s == 2.0 and pipe.settings.threshold_overrides == {"MI": 0.3} and pipe.settings.hr_high_bpm == 170
    with pytest.raises(ValueError):
        pipe.apply(PipelineSettings(length_s=5.0))
    for stride in (0.0, -1.0, 10.5):                       # no progress, or signal left unanalysed
        with pytest.raises(ValueError, match="stride_s"):
            pipe.apply(PipelineSettings(stride_s=stride))
        with pytest.raises(ValueError, match="stride_s"):
            WindowAssembler(500, stride, _resampler_factory)
    assert pipe.settings.stride_s == 2.0
