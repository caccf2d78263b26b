"""The station's intake rules, on SQLite and PostgreSQL: exactly-once storage by msg_id, receipts, quarantine of
malformed / oversized / foreign-topic / tampered messages, device state, re-sends on birth. (The MQTT side of the
same rules is in test_cloud_ingest.py.)"""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from cloud_dashboard.db.engine import make_engine, session_factory
from cloud_dashboard.db.migrate import alembic_config, current, head, upgrade
from cloud_dashboard.db.models import Device, Message, Quarantine, Result, Review, Strip, TelemetrySample
from cloud_dashboard.ingest.store import Ingestor
from cloud_dashboard.testing import envelope, result_messages
from cloud_support import database_url, mi_record, norm_record, pg_server  # noqa: F401
from edge_app.uplink.schemas import validate


@pytest.fixture
def db(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def handle(db, ing, topic, doc):
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with db() as s:
        out = ing.handle(s, topic, payload)
        s.commit()
    return out


def count(db, model, *where):
    with db() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_migrations_reach_head_and_match_the_models(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from cloud_dashboard.db.models import Base
    upgrade(database_url)
    assert current(database_url) == head() == "0001"
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
    upgrade(database_url)              # idempotent
    assert alembic_config(database_url).get_main_option("script_location").endswith("migrations")


def test_result_and_strip_stored_once_with_receipts(db, mi_record):
    ing = Ingestor("ecg", "St Test ED")
    tri, strip = result_messages(*mi_record, device_id="amb-1", seq=1)
    first = handle(db, ing, "ecg/amb-1/triage", tri)
    again = handle(db, ing, "ecg/amb-1/triage", tri)              # QoS 1 redelivery: same msg_id
    st = handle(db, ing, "ecg/amb-1/strip", strip)
    st2 = handle(db, ing, "ecg/amb-1/strip", strip)
    assert [first.status, again.status, st.status, st2.status] == ["stored", "duplicate", "stored", "duplicate"]
    assert count(db, Message) == 2 and count(db, Result) == 1 and count(db, Strip) == 1
    # every answer is a valid ecg.receipt/1, and a repeat is answered with the same stored_at
    receipts = [o.publish[0] for o in (first, again, st, st2)]
    for topic, doc in receipts:
        assert topic == "ecg/amb-1/receipt"
        validate(doc, "receipt")
        assert doc["station"] == "St Test ED" and doc["result_id"] == tri["result"]["id"]
    assert receipts[0][1]["stored_at"] == receipts[1][1]["stored_at"]
    assert receipts[0][1]["msg_ids"] == [tri["msg_id"]] and receipts[2][1]["kinds"] == ["strip"]
    with db() as s:
        r = s.scalar(select(Result))
        assert r.suspected_mi and r.priority == "high" and r.findings.split() == ["MI"] and not r.reviewed
        assert r.device_id == "amb-1" and r.payload["id"] == tri["result"]["id"]
        assert s.get(Device, "amb-1").last_seen is not None


def test_malformed_oversized_foreign_and_tampered_messages_are_quarantined(db, mi_record):
    ing = Ingestor("ecg", "St Test ED", max_payload_bytes=64 * 1024)
    tri, strip = result_messages(*mi_record, device_id="amb-1")
    bad_schema = dict(tri, priority="urgent")
    tampered = json.loads(json.dumps(strip))
    tampered["strip"]["sha256"] = "0" * 64
    foreign = result_messages(*mi_record, device_id="amb-1")[0]
    cases = [("ecg/amb-1/triage", b"\xff not json", "not_json"),
             ("ecg/amb-1/triage", bad_schema, "schema"),
             ("ecg/amb-2/triage", foreign, "foreign_topic"),
             ("ecg/amb-1/strip", tampered, "strip"),
             ("ecg/amb-1/triage", b"{" + b" " * (70 * 1024) + b"}", "oversized"),
             ("ecg/amb-1/telemetry", {"schema": "ecg.telemetry/1"}, "schema"),
             ("elsewhere/amb-1/triage", tri, "unknown_topic")]
    for topic, doc, reason in cases:
        out = handle(db, ing, topic, doc)
        assert (out.status, out.reason) == ("quarantined", reason), (topic, out)
        assert out.publish == []                                  # no receipt for what was not stored
    assert count(db, Quarantine) == len(cases) and count(db, Message) == 0
    assert ing.counters["quarantined"] == len(cases)
    # the station runs on: the genuine messages are then stored
    assert handle(db, ing, "ecg/amb-1/triage", tri).status == "stored"
    assert handle(db, ing, "ecg/amb-2/triage", foreign).status == "quarantined"
    with db() as s:
        q = s.scalars(select(Quarantine).where(Quarantine.reason == "foreign_topic")).first()
        assert "amb-2" in q.topic and "device_id" in q.detail


def test_a_result_id_reused_under_another_msg_id_is_a_conflict(db, mi_record):
    ing = Ingestor("ecg", "St")
    tri, _ = result_messages(*mi_record, device_id="amb-1")
    assert handle(db, ing, "ecg/amb-1/triage", tri).status == "stored"
    forged = dict(tri, msg_id="f" * 32)
    out = handle(db, ing, "ecg/amb-1/triage", forged)
    assert (out.status, out.reason) == ("quarantined", "conflict")
    assert count(db, Result) == 1 and count(db, Message) == 1


def test_device_state_birth_availability_telemetry(db):
    ing = Ingestor("ecg", "St")
    birth = {"schema": "ecg.birth/1", "device_id": "amb-3", "ts": "2026-12-04T10:00:00Z", "software_version": "0.1.0",
             "capabilities": ["status"], "protocol": "mqtt5", "max_command_bytes": 8388608,
             "disclaimer": "Triage aid, not a diagnosis.", "model": {"version": "1.0.0", "model_sha256": "ab" * 32}}
    assert handle(db, ing, "ecg/amb-3/birth", birth).birth
    assert handle(db, ing, "ecg/amb-3/availability", b"online").status == "state"
    tel = {"schema": "ecg.telemetry/1", "device_id": "amb-3", "ts": "2026-12-04T10:00:30Z", "uptime_s": 30,
           "outbox_depth": 4, "signal_quality": {"verdict": "good"}, "cpu_percent": 12.5}
    handle(db, ing, "ecg/amb-3/telemetry", tel)
    handle(db, ing, "ecg/amb-3/telemetry", tel)                   # retained copy seen again: one sample
    handle(db, ing, "ecg/amb-3/telemetry", dict(tel, ts="2026-12-04T10:01:00Z", outbox_depth=0))
    assert count(db, TelemetrySample) == 2
    with db() as s:
        d = s.get(Device, "amb-3")
        assert d.online and d.model_version == "1.0.0" and d.outbox_depth == 0
    handle(db, ing, "ecg/amb-3/availability", b"offline")         # Last Will
    with db() as s:
        assert not s.get(Device, "amb-3").online
    assert handle(db, ing, "ecg/amb-3/availability", b"maybe").status == "quarantined"


def test_birth_resends_receipts_and_reviews(db, mi_record):
    ing = Ingestor("ecg", "St")
    tri, strip = result_messages(*mi_record, device_id="amb-1")
    handle(db, ing, "ecg/amb-1/triage", tri)
    handle(db, ing, "ecg/amb-1/strip", strip)
    with db() as s:
        s.add(Review(review_id="a" * 32, result_id=tri["result"]["id"], device_id="amb-1", verdict="confirmed",
                     text="cath lab", reviewer="Dr X", station="St"))
        s.commit()
        out = ing.resend_for(s, "amb-1", 24)
    topics = [t for t, _ in out]
    assert topics.count("ecg/amb-1/receipt") == 2 and topics[-1] == "ecg/amb-1/review"
    for t, doc in out:
        validate(doc, "review" if t.endswith("review") else "receipt")
    assert out[-1][1]["verdict"] == "confirmed" and out[-1][1]["reviewer"] == "Dr X"
    with db() as s:
        assert ing.resend_for(s, "amb-9", 24) == []


def test_alarm_and_event_stored(db, mi_record):
    ing = Ingestor("ecg", "St")
    r = mi_record[0]
    alarm = envelope("ecg.alarm/1", "amb-1", "alarm", dict(r["alarms"][0], device_id="amb-1"), "high")
    ev = envelope("ecg.event/1", "amb-1", "event", {"schema": "ecg-edge.event/1", "code": "started", "run_id": str(uuid.uuid4()),
                                                     "device_id": "amb-1", "time": "2026-12-04T10:00:00Z"})
    assert handle(db, ing, "ecg/amb-1/alarm", alarm).status == "stored"
    assert handle(db, ing, "ecg/amb-1/event", ev).status == "stored"
    assert handle(db, ing, "ecg/amb-1/alarm", alarm).status == "duplicate"
    assert count(db, Message) == 2


def test_a_flood_of_bad_messages_is_counted_but_not_all_stored(db):
    """A misbehaving client cannot fill the station's disk through the quarantine."""
    from cloud_dashboard.ingest.store import QUARANTINE_ROWS_PER_MINUTE
    ing = Ingestor("ecg", "St")
    n = QUARANTINE_ROWS_PER_MINUTE + 25
    for _ in range(n):
        assert handle(db, ing, "ecg/amb-9/triage", b"garbage").status == "quarantined"
    assert ing.counters["quarantined"] == n
    assert ing.counters["quarantine_rows_suppressed"] + count(db, Quarantine) == n
    assert count(db, Quarantine) <= QUARANTINE_ROWS_PER_MINUTE * 2     # at most two minute windows touched
    assert handle(db, ing, "ecg/amb-8/triage", b"garbage").status == "quarantined"   # another client: stored
