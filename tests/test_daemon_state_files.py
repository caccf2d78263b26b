"""A power cut or a hand edit can leave any file in <state_dir> unreadable or of the wrong shape. Opening the
device's state (what the daemon does at start) must then go on with defaults and say so, never crash: the
appliance has to come back up. No model, no daemon: edge_app.device_state.open_device_state on a real dir."""
from __future__ import annotations

import pytest

from edge_app.config import config_from_dict
from edge_app.device_state import open_device_state
from edge_app.dispatcher import Dispatcher
from edge_app.run_ledger import RunLedger

BROKEN = ["", "{not json", "[1, 2]", "null", '"text"', "42"]


@pytest.mark.parametrize("content", BROKEN)
def test_unreadable_state_files_fall_back_to_defaults(tmp_path, content, caplog):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    for name in ("patient.json", "config-overrides.json", "alarms.json", "run.json"):
        (state_dir / name).write_text(content)
    cfg = config_from_dict({"device": {"id": "dev"}, "storage": {"state_dir": str(state_dir)},
                            "patient": {"age": 50, "sex": "male"}})
    bus = Dispatcher()
    state = open_device_state(cfg, "run-1", bus.publish)
    try:
        state.alarms.restore()
        assert state.patient.get().age == 50.0                  # the config's patient, not the broken file
        assert state.runtime.current.get("windows.stride_s") == 5
        assert state.alarms.active_codes() == []
        ledger = RunLedger(state_dir / "run.json", "run-1", "dev", state.audit, bus.publish)
        assert ledger.begin()["previous_stop"] is None
    finally:
        state.close()
