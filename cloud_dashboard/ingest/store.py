"""What the station does with one device message: check it, store it exactly once, say what to answer.

Why separate from the MQTT worker: the rules (schema, topic/payload agreement, size, idempotency by msg_id)
are the station's contract with the fleet and must be testable on their own; the worker only moves bytes
and acknowledges them after `commit`.

`Ingestor.handle_batch(session, messages)` returns one `Outcome` per message: stored | duplicate | state |
quarantined, plus the receipts to publish once the transaction is committed. Idempotency is the database's:
`INSERT ... ON CONFLICT (msg_id) DO NOTHING` on `messages`, and every dependent row is written only when that
insert took effect, in the same transaction -- so two workers, or one worker and its own restarted self,
can receive the same message and the database holds it once.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edge_app.uplink.schemas import load as load_schema
from edge_app.uplink.strip_codec import StripError, decode_strip
from edge_app.uplink.topics import split_device_topic

from ..db.models import (Alarm, CommandReply, Device, Event, Message, Quarantine, Result, Review, Strip,
                         TelemetrySample, iso, utc, utcnow)

log = logging.getLogger(__name__)

DURABLE = ("triage", "alarm", "event", "strip")
STATE = ("availability", "birth", "telemetry", "config/reported")
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2, "none": 3}
QUALITY_SCORE = {"good": 1.0, "acceptable": 0.5, "unusable": 0.0}
HEAD_BYTES = 4096
QUARANTINE_ROWS_PER_MINUTE = 30


@dataclass
class Outcome:
    status: str                          # stored | duplicate | state | quarantined
    topic: str
    device_id: str | None = None
    kind: str | None = None
    reason: str | None = None
    detail: str | None = None
    msg_id: str | None = None
    result_id: str | None = None
    publish: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # (topic, payload) after commit
    birth: bool = False


class Rejected(Exception):
    def __init__(self, reason: str, detail: str, device_id: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.device_id = reason, detail, device_id


def parse_time(s: Any) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


_VALIDATORS: dict[str, Any] = {}


def schema_errors(doc: Any, name: str) -> str | None:
    """The first schema violation of `doc` against edge_app's schema `name`, or None.

    Why not edge_app.uplink.schemas.validate(): jsonschema.validate() re-checks the schema itself against the
    meta-schema on every call (35 ms per message here, 97 % of the intake's CPU); a validator compiled once per
    schema does the same check in well under a millisecond."""
    v = _VALIDATORS.get(name)
    if v is None:
        import jsonschema
        schema = load_schema(name)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        v = _VALIDATORS[name] = cls(schema)
    err = next(iter(v.iter_errors(doc)), None)
    if err is None:
        return None
    return f"{'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message[:300]}"


def _insert(session: Session):
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)


class Ingestor:
    """Stateless rules + the station's identity (name used in receipts)."""

    def __init__(self, prefix: str, station: str, max_payload_bytes: int = 1024 * 1024, worker: str = ""):
        self.prefix, self.station, self.max_payload_bytes, self.worker = prefix, station, max_payload_bytes, worker
        self.counters: dict[str, int] = {"stored": 0, "duplicate": 0, "state": 0, "quarantined": 0,
                                         "quarantine_rows_suppressed": 0}
        self._q_window: tuple[int, dict[tuple[str | None, str], int]] = (0, {})

    # -- entry ---------------------------------------------------------------------------------------------
    def handle(self, session: Session, topic: str, payload: bytes) -> Outcome:
        """Check and stage one message in `session` (the caller commits). Never raises for bad input."""
        parts = split_device_topic(self.prefix, topic)
        device_id, leaf = parts if parts else (None, "")
        try:
            if len(payload) > self.max_payload_bytes:
                raise Rejected("oversized", f"{len(payload)} bytes > mqtt.max_payload_bytes {self.max_payload_bytes}")
            if parts is None:
                raise Rejected("unknown_topic", f"topic {topic!r} is not under {self.prefix}/<device>/")
            if leaf in DURABLE:
                out = self._durable(session, topic, device_id, leaf, payload)
            elif leaf in STATE:
                out = self._state(session, topic, device_id, leaf, payload)
            elif leaf.startswith("cmd/") and leaf.endswith("/reply"):
                out = self._reply(session, topic, device_id, leaf, payload)
            else:
                raise Rejected("unknown_topic", f"leaf {leaf!r} is not one the station stores")
        except Rejected as rej:
            out = self.quarantine(session, topic, payload, rej.reason, rej.detail, rej.device_id or device_id)
        self.counters[out.status] += 1
        return out

    def quarantine(self, session: Session, topic: str, payload: bytes, reason: str, detail: str,
                   device_id: str | None) -> Outcome:
        minute = int(time.time() // 60)
        if self._q_window[0] != minute:
            self._q_window = (minute, {})
        key = (device_id, reason)
        seen = self._q_window[1][key] = self._q_window[1].get(key, 0) + 1
        if seen > QUARANTINE_ROWS_PER_MINUTE:
            # A misbehaving client must not fill the station's disk: beyond this many rows per (client, reason) a
            # minute, a refusal is only counted (ingest_workers.counters), not stored.
            self.counters["quarantine_rows_suppressed"] += 1
            return Outcome("quarantined", topic, device_id, reason=reason, detail=detail)
        log.warning("quarantined %s (%s): %s", topic, reason, detail[:300])
        session.add(Quarantine(topic=topic[:300], device_id=(device_id or None) and device_id[:64], reason=reason,
                               detail=detail[:2000], size=len(payload),
                               payload_head=payload[:HEAD_BYTES].decode("utf-8", "replace"), worker=self.worker))
        return Outcome("quarantined", topic, device_id, reason=reason, detail=detail)

    # -- durable messages: exactly once ------------------------------------------------------------------
    def _json(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected("not_json", f"payload is not JSON: {exc}") from None

    def _validated(self, doc: Any, leaf: str, topic_device: str) -> dict[str, Any]:
        problem = schema_errors(doc, "config_reported" if leaf == "config/reported" else leaf)
        if problem:
            raise Rejected("schema", f"not a valid {leaf} message: {problem}")
        if doc.get("device_id") != topic_device:
            raise Rejected("foreign_topic", f"payload device_id {doc.get('device_id')!r} != topic device "
                                            f"{topic_device!r} (a device may only speak for itself)")
        return doc

    def _durable(self, session: Session, topic: str, device_id: str, kind: str, payload: bytes) -> Outcome:
        doc = self._validated(self._json(payload), kind, device_id)
        rows: list[Any] = []
        result_id = None
        now = utcnow()
        if kind == "strip":
            try:
                strip = decode_strip(doc["strip"])      # schema checked above; this verifies size + checksum
            except StripError as exc:
                raise Rejected("strip", str(exc)) from None
            result_id = strip.result_id
            rows.append(Strip(msg_id=doc["msg_id"], result_id=strip.result_id, device_id=device_id, fs=strip.fs,
                              n_samples=strip.n_samples, t0=strip.t0, strip=doc["strip"], received_at=now))
        elif kind == "triage":
            rows.append(self._result_row(doc, device_id, now))
            result_id = rows[0].result_id
        elif kind == "alarm":
            a = doc.get("alarm") or {}
            result_id = a.get("result_id") if isinstance(a.get("result_id"), str) else None
            rows.append(Alarm(msg_id=doc["msg_id"], device_id=device_id, priority=doc["priority"],
                              code=str(a.get("code"))[:64] if a.get("code") is not None else None,
                              result_id=result_id, time=parse_time(a.get("time")), payload=doc, received_at=now))
        else:
            e = doc.get("event") or {}
            rows.append(Event(msg_id=doc["msg_id"], device_id=device_id, code=str(e.get("code"))[:64],
                              time=parse_time(e.get("time")), payload=doc, received_at=now))
        if kind == "triage":
            prior_msg = session.scalar(select(Result.msg_id).where(Result.result_id == result_id))
            if prior_msg is not None and prior_msg != doc["msg_id"]:
                raise Rejected("conflict", f"result {result_id} already stored under msg_id {prior_msg}")
        self._touch_device(session, device_id, now)
        ins = _insert(session)(Message).values(
            msg_id=doc["msg_id"], device_id=device_id, kind=kind, seq=doc.get("seq"), priority=doc.get("priority"),
            created_at=parse_time(doc.get("created_at")), received_at=now, result_id=result_id, size=len(payload),
            worker=self.worker).on_conflict_do_nothing(index_elements=["msg_id"]).returning(Message.msg_id)
        if session.execute(ins).scalar() is None:          # the key existed: a repeat delivery
            prior = session.get(Message, doc["msg_id"])
            stored_at = prior.received_at if prior else now
            out = Outcome("duplicate", topic, device_id, kind, msg_id=doc["msg_id"], result_id=result_id)
        else:
            session.add_all(rows)
            session.flush()
            stored_at = now
            out = Outcome("stored", topic, device_id, kind, msg_id=doc["msg_id"], result_id=result_id)
        out.publish.append((f"{self.prefix}/{device_id}/receipt",
                            self.receipt(device_id, [doc["msg_id"]], [kind], result_id, stored_at)))
        return out

    def _result_row(self, doc: dict[str, Any], device_id: str, now: datetime) -> Result:
        from edge_app.results import validate_result_dict
        r = doc["result"]
        problems = validate_result_dict(r)
        if problems:
            raise Rejected("schema", "result: " + "; ".join(problems[:5]))
        if r.get("device_id") != device_id:
            raise Rejected("foreign_topic", f"result.device_id {r.get('device_id')!r} != {device_id!r}")
        findings = [f.get("cls") for f in (r.get("explanation") or {}).get("findings", []) if isinstance(f, dict)]
        acquired = parse_time(r.get("time")) or parse_time(doc.get("created_at")) or now
        mi = "MI" in findings or any(a.get("code") == "suspected_mi" for a in r.get("alarms", []))
        return Result(result_id=str(r["id"])[:64], msg_id=doc["msg_id"], device_id=device_id,
                      priority=doc["priority"], priority_rank=PRIORITY_RANK[doc["priority"]],
                      triage_level=r["triage_level"], suspected_mi=mi,
                      findings=" " + " ".join(str(f) for f in findings if f) + " ",
                      quality=(r.get("quality") or {}).get("verdict"), heart_rate_bpm=r.get("heart_rate_bpm"),
                      acquired_at=acquired, created_at=parse_time(doc.get("created_at")), received_at=now,
                      delay_s=round((now - acquired).total_seconds(), 3), historical=bool(doc.get("historical")),
                      model_version=(r.get("model") or {}).get("version"), payload=r)

    def receipt(self, device_id: str, msg_ids: list[str], kinds: list[str], result_id: str | None,
                stored_at: datetime) -> dict[str, Any]:
        return {"schema": "ecg.receipt/1", "receipt_id": uuid.uuid4().hex, "device_id": device_id,
                "msg_ids": msg_ids, "kinds": kinds, "result_id": result_id, "station": self.station,
                "stored_at": iso(stored_at)}

    # -- device state (retained topics): last writer wins -------------------------------------------------
    def _touch_device(self, session: Session, device_id: str, now: datetime, **values: Any) -> None:
        touched = session.info.setdefault("touched_devices", set())   # once per transaction is enough for
        if not values and device_id in touched:                       # last_seen (a batch is ~milliseconds)
            return
        touched.add(device_id)
        session.execute(_insert(session)(Device).values(id=device_id, online=False, first_seen=now)
                        .on_conflict_do_nothing(index_elements=["id"]))
        session.execute(update(Device).where(Device.id == device_id).values(last_seen=now, **values))

    def _state(self, session: Session, topic: str, device_id: str, leaf: str, payload: bytes) -> Outcome:
        now = utcnow()
        out = Outcome("state", topic, device_id, leaf)
        if leaf == "availability":
            text = payload.decode("utf-8", "replace").strip()
            if text not in ("online", "offline"):
                raise Rejected("schema", f"availability must be 'online' or 'offline', got {text[:40]!r}")
            self._touch_device(session, device_id, now, online=text == "online", availability_at=now)
            return out
        doc = self._validated(self._json(payload), leaf, device_id)
        if leaf == "birth":
            model = doc.get("model") or {}
            self._touch_device(session, device_id, now, birth=doc, software_version=doc.get("software_version"),
                               model_version=model.get("version"), model_sha256=model.get("model_sha256"))
            out.birth = True
        elif leaf == "telemetry":
            self._touch_device(session, device_id, now, telemetry=doc, outbox_depth=doc.get("outbox_depth"))
            ts = parse_time(doc.get("ts")) or now
            q = doc.get("signal_quality")
            verdict = q.get("verdict") if isinstance(q, dict) else q
            temp, cpu = doc.get("temperature_c"), doc.get("cpu_percent")
            session.execute(_insert(session)(TelemetrySample).values(
                device_id=device_id, ts=ts, received_at=now, outbox_depth=doc.get("outbox_depth"),
                cpu_percent=cpu if isinstance(cpu, (int, float)) else None,
                temperature_c=temp if isinstance(temp, (int, float)) else None,
                quality_score=QUALITY_SCORE.get(verdict) if isinstance(verdict, str) else None,
                payload=doc).on_conflict_do_nothing(index_elements=["device_id", "ts"]))
        else:
            self._touch_device(session, device_id, now, config_reported=doc)
        return out

    def _reply(self, session: Session, topic: str, device_id: str, leaf: str, payload: bytes) -> Outcome:
        doc = self._validated(self._json(payload), "reply", device_id)
        err = doc.get("error") or {}
        session.add(CommandReply(device_id=device_id, command=str(doc.get("command"))[:64],
                                 correlation_id=str(doc.get("correlation_id"))[:128], ok=bool(doc.get("ok")),
                                 error_code=err.get("code") if isinstance(err, dict) else None, payload=doc))
        return Outcome("state", topic, device_id, "reply")

    # -- what a device missed while offline ------------------------------------------------------------
    def resend_for(self, session: Session, device_id: str, window_h: float, max_receipts: int = 200
                   ) -> list[tuple[str, dict[str, Any]]]:
        """Reviews of the last `window_h` hours and receipts of the most recent messages, for a device that
        has just (re)connected (its birth): plain QoS 1 to a clean session is lost while a device is away."""
        since = utcnow() - timedelta(hours=window_h)
        out: list[tuple[str, dict[str, Any]]] = []
        msgs = session.scalars(select(Message).where(Message.device_id == device_id, Message.received_at >= since)
                               .order_by(Message.received_at.desc()).limit(max_receipts)).all()
        for m in reversed(msgs):
            out.append((f"{self.prefix}/{device_id}/receipt",
                        self.receipt(device_id, [m.msg_id], [m.kind], m.result_id, m.received_at)))
        for rv in session.scalars(select(Review).where(Review.device_id == device_id, Review.reviewed_at >= since)
                                  .order_by(Review.reviewed_at)).all():
            out.append((f"{self.prefix}/{device_id}/review", review_message(rv)))
        return out


def review_message(rv: Review) -> dict[str, Any]:
    return {"schema": "ecg.review/1", "review_id": rv.review_id, "device_id": rv.device_id,
            "result_id": rv.result_id, "verdict": rv.verdict, "text": rv.text, "reviewer": rv.reviewer,
            "reviewed_at": iso(rv.reviewed_at), "station": rv.station}
