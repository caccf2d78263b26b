"""Alarm continuity across restarts: <state_dir>/alarms.json (written atomically on every alarm change) lets a
restarted daemon continue its active alarms (same id, acknowledgement kept) when saved recently, and close them
(audited, published as cleared) when the state is too old or the clock went backwards. The daemon runs in-process
with the real model, store and audit log; no front end is needed because nothing here reads samples."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_app.config import config_from_dict
from edge_app.alarm_latch import ALARM_RESTORE_MAX_AGE_S
from edge_app.daemon import Daemon
from edge_app.results import Alarm


def _daemon(tmp: Path) -> Daemon:
    cfg = config_from_dict({"device": {"id": "alarm-dev"}, "frontend": {"port": str(tmp / "no-frontend")},
                            "storage": {"state_dir": str(tmp / "state")}})
    d = Daemon(cfg, driver_factory=lambda port, baud, fs: None)
    d.start()
    return d


def _saved(tmp: Path, age_s: float, acked: bool = True) -> Alarm:
    al = Alarm(id="4f0c2b2e-0000-4000-8000-000000000001", kind="physiological", priority="high",
               code="suspected_mi", message="Suspected MI", time="2026-11-30T05:00:00.000Z", device_id="alarm-dev",
               acknowledged_by="crew-7" if acked else None,
               acknowledged_at="2026-11-30T05:00:05.000Z" if acked else None)
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    (tmp / "state" / "alarms.json").write_text(json.dumps(
        {"saved_at_epoch": time.time() - age_s, "run_id": "previous-run", "active": [al.to_dict()]}))
    return al


def _audit(tmp: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp / "state" / "audit.jsonl").read_text().splitlines()]


def test_recent_alarm_continues_with_its_id_and_acknowledgement_and_changes_are_persisted(tmp_path):
    al = _saved(tmp_path, age_s=5)
    d = _daemon(tmp_path)
    try:
        now = {a["id"]: a for a in d.operations.alarms()}
        assert now[al.id]["active"] and now[al.id]["acknowledged_by"] == "crew-7"
        # the next window with the condition keeps the same alarm (no new raise)
        kept = d.alarms.raise_condition("suspected_mi", "physiological", "high", "Suspected MI", result_id="r1")
        assert kept.id == al.id and kept.acknowledged_by == "crew-7"
        # a new condition is written to the file at once; its end too
        new = d.alarms.raise_condition("signal_unusable", "technical", "medium", "electrode V2 off")
        on_disk = json.loads((tmp_path / "state" / "alarms.json").read_text())
        assert {a["id"] for a in on_disk["active"]} == {al.id, new.id} and on_disk["run_id"] == d.run_id
        d.alarms.clear_condition("suspected_mi")
        d.operations.acknowledge_alarm(new.id, "crew-8")
        on_disk = json.loads((tmp_path / "state" / "alarms.json").read_text())
        assert [(a["id"], a["acknowledged_by"]) for a in on_disk["active"]] == [(new.id, "crew-8")]
    finally:
        d.shutdown()
    kinds = [(e["kind"], e["data"].get("id")) for e in _audit(tmp_path)]
    assert ("alarm_restored", al.id) in kinds and ("alarm", al.id) not in kinds
    assert ("alarm_cleared", al.id) in kinds


@pytest.mark.parametrize("age_s", [ALARM_RESTORE_MAX_AGE_S + 60, -3600])    # too old; clock went backwards
def test_stale_alarm_state_is_closed_not_continued(tmp_path, age_s):
    al = _saved(tmp_path, age_s=age_s)
    d = _daemon(tmp_path)
    try:
        assert not any(a["active"] for a in d.operations.alarms())
        again = d.alarms.raise_condition("suspected_mi", "physiological", "high", "Suspected MI")
        assert again.id != al.id and again.acknowledged_by is None      # raised anew, loudly
    finally:
        d.shutdown()
    cleared = [e["data"] for e in _audit(tmp_path) if e["kind"] == "alarm_cleared" and e["data"]["id"] == al.id]
    assert cleared and "not continued after restart" in cleared[0]["reason"]


def test_unreadable_alarm_file_does_not_stop_the_daemon(tmp_path):
    (tmp_path / "state").mkdir(parents=True)
    (tmp_path / "state" / "alarms.json").write_text('{"saved_at_epoch": ')
    d = _daemon(tmp_path)
    try:
        assert d.operations.alarms() == [] and d.state == "ready"
    finally:
        d.shutdown()
    assert json.loads((tmp_path / "state" / "alarms.json").read_text())["active"] == []
