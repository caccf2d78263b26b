"""The alarm latch on its own (no model, no daemon): one alarm per persisting condition, hysteresis for window
conditions, acknowledgement, persistence in alarms.json and restore, with a real hash-chained audit log."""
from __future__ import annotations

import json

import pytest

from edge_app.alarm_latch import ALARM_RESTORE_MAX_AGE_S, CLEAR_AFTER_WINDOWS, AlarmLatch
from edge_app.errors import StateConflict
from edge_app.messages import AlarmChanged
from edge_app.results import Alarm
from edge_app.storage import AuditLog


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def env(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", "dev")
    published: list[AlarmChanged] = []
    clock = Clock()

    def make(run_id: str = "run-1") -> AlarmLatch:
        return AlarmLatch(tmp_path / "alarms.json", "dev", run_id, audit, published.append, clock=clock)
    yield make, published, audit, clock, tmp_path
    audit.close()


def _kinds(tmp_path) -> list[str]:
    return [json.loads(x)["kind"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


def window_alarm(code: str) -> Alarm:
    return Alarm(id="from-window", kind="physiological", priority="high", code=code, message=code,
                 time="t", device_id="dev")


def test_a_persisting_condition_keeps_one_alarm_and_ends_after_the_hysteresis(env):
    make, published, _, _, tmp_path = env
    latch = make()
    ids = [latch.observe_window([window_alarm("suspected_mi")], f"r{i}")[0].id for i in range(3)]
    assert len(set(ids)) == 1 and ids[0] != "from-window"
    assert [(m.state, m.alarm.code) for m in published] == [("raised", "suspected_mi")]
    for i in range(CLEAR_AFTER_WINDOWS - 1):          # not yet: a probability hovering at threshold
        latch.observe_window([], f"quiet{i}")
    assert latch.active_codes() == ["suspected_mi"]
    latch.observe_window([window_alarm("suspected_mi")], "back")   # back again: the absence count restarts
    for i in range(CLEAR_AFTER_WINDOWS - 1):
        latch.observe_window([], f"quiet-again{i}")
    assert latch.active_codes() == ["suspected_mi"]
    latch.observe_window([], "last")
    assert latch.active_codes() == [] and published[-1].state == "cleared" and published[-1].alarm.id == ids[0]
    assert _kinds(tmp_path).count("alarm") == 1 and _kinds(tmp_path).count("alarm_cleared") == 1


def test_signal_unusable_clears_at_once_and_other_codes_only_when_their_owner_says(env):
    make, _, _, _, _ = env
    latch = make()
    latch.observe_window([window_alarm("signal_unusable")], "r1")
    latch.raise_condition("vf", "physiological", "high", "ventricular fibrillation")   # a stream analyser's code
    latch.observe_window([], "r2")
    assert latch.active_codes() == ["vf"]
    for i in range(5):
        latch.observe_window([], f"r{i + 3}")
    assert latch.active_codes() == ["vf"]
    latch.clear_condition("vf")
    assert latch.active_codes() == []


def test_acknowledgement_first_wins_is_audited_persisted_and_unknown_ids_are_refused(env):
    make, published, _, _, tmp_path = env
    latch = make()
    alarm = latch.raise_condition("no_device", "technical", "medium", "no front end")
    latch.acknowledge(alarm.id, "crew-1")
    with pytest.raises(StateConflict, match="crew-1"):
        latch.acknowledge(alarm.id, "crew-2")
    assert alarm.acknowledged_by == "crew-1" and published[-1].state == "acknowledged"
    saved = json.loads((tmp_path / "alarms.json").read_text())
    assert saved["run_id"] == "run-1" and saved["active"][0]["acknowledged_by"] == "crew-1"
    with pytest.raises(KeyError):
        latch.acknowledge("no-such-id", "crew-1")
    latch.clear_condition("no_device")
    assert json.loads((tmp_path / "alarms.json").read_text())["active"] == []
    assert latch.recent()[0]["active"] is False
    assert "alarm_ack" in _kinds(tmp_path)


def test_restore_continues_recent_alarms_and_closes_stale_ones(env):
    make, published, _, clock, tmp_path = env
    first = make("run-1")
    kept = first.raise_condition("suspected_mi", "physiological", "high", "MI")
    first.acknowledge(kept.id, "crew-1")
    clock.now += 30                                       # restart 30 s later
    published.clear()
    second = make("run-2")
    second.restore()
    assert second.active_codes() == ["suspected_mi"]
    assert published[-1].restored and published[-1].state == "acknowledged"
    again = second.raise_condition("suspected_mi", "physiological", "high", "MI")
    assert again.id == kept.id and again.acknowledged_by == "crew-1"
    clock.now += ALARM_RESTORE_MAX_AGE_S + 1             # a third run much later: not continued
    published.clear()
    third = make("run-3")
    third.restore()
    assert third.active_codes() == [] and [m.state for m in published] == ["cleared"]
    assert "alarm_restored" in _kinds(tmp_path)


def test_an_unreadable_alarm_file_starts_afresh(env):
    make, _, _, _, tmp_path = env
    (tmp_path / "alarms.json").write_text("{not json")
    latch = make()
    latch.restore()
    assert latch.active_codes() == []
    assert json.loads((tmp_path / "alarms.json").read_text())["active"] == []
