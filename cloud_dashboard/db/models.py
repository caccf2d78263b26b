"""The station's tables, as typed SQLAlchemy 2 models. The Alembic migrations create exactly these.

Why these shapes:
- `messages` holds one row per device message ever stored, keyed by its `msg_id` (primary key = the unique
  constraint): MQTT QoS 1 is at-least-once, so a redelivered message hits the key and is answered as a
  duplicate. Every other row (result, strip, alarm, event) is written in the same transaction as its
  `messages` row, so storage is exactly-once even with several workers and a worker killed mid-flush.
- `results` keeps the fields the worklist sorts and filters on as columns (indexed) and the device's whole
  result as JSON; `strips` keeps the strip exactly as it travelled (compact, checksummed) and is linked by
  `result_id`, not a foreign key: with several workers a strip may be stored before its result.
- `quarantine` keeps what was refused (bounded copy) with the reason, so nothing disappears unexplained.
- Users, sessions, API tokens, login attempts and the audit trail live here too (one database to back up).
Times are UTC; SQLite returns them naive, so read them through `utc()`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def utc(dt: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    dt = utc(dt)
    return None if dt is None else dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    availability_at: Mapped[datetime | None]
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime | None]
    software_version: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    birth: Mapped[dict[str, Any] | None]
    telemetry: Mapped[dict[str, Any] | None]
    config_reported: Mapped[dict[str, Any] | None]
    outbox_depth: Mapped[int | None]


class Message(Base):
    """Every stored device message, once. msg_id is the idempotency key."""
    __tablename__ = "messages"
    msg_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))          # triage | alarm | event | strip
    seq: Mapped[int | None] = mapped_column(BigInteger)
    priority: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime | None]                     # on the device
    received_at: Mapped[datetime] = mapped_column(default=utcnow)   # committed here (the receipt's stored_at)
    result_id: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(80))


class Result(Base):
    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(String(64), unique=True)
    msg_id: Mapped[str] = mapped_column(String(32), ForeignKey("messages.msg_id"))
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[str] = mapped_column(String(8))               # message priority: high|medium|low|none
    priority_rank: Mapped[int] = mapped_column(Integer)            # 0 = high ... 3 = none (sort key)
    triage_level: Mapped[str] = mapped_column(String(24))
    suspected_mi: Mapped[bool] = mapped_column(Boolean, default=False)
    findings: Mapped[str] = mapped_column(String(200), default="")  # " MI STTC " (spaces around: LIKE '% MI %')
    quality: Mapped[str | None] = mapped_column(String(16))
    heart_rate_bpm: Mapped[float | None] = mapped_column(Float)
    acquired_at: Mapped[datetime]                                  # result.time (device clock)
    created_at: Mapped[datetime | None]                            # message created on the device
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    delay_s: Mapped[float | None] = mapped_column(Float)           # received_at - acquired_at
    historical: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)
    verdict: Mapped[str | None] = mapped_column(String(16))        # latest review's verdict
    model_version: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]                                # the device's result, as sent

    __table_args__ = (
        Index("ix_results_device_time", "device_id", "acquired_at"),
        Index("ix_results_acquired", "acquired_at"),
        Index("ix_results_reviewed_time", "reviewed", "acquired_at"),   # "unreviewed, newest first" searches
    )


#: The worklist's exact sort order (unreviewed, suspected MI, priority, newest): the first page is an index range
#: scan that stops after `limit` rows, with no sort, however many results are stored.
Index("ix_results_worklist", Result.reviewed, Result.suspected_mi.desc(), Result.priority_rank,
      Result.acquired_at.desc())


class Strip(Base):
    __tablename__ = "strips"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(32), ForeignKey("messages.msg_id"), unique=True)
    result_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(64))
    fs: Mapped[float] = mapped_column(Float)
    n_samples: Mapped[int] = mapped_column(Integer)
    t0: Mapped[str | None] = mapped_column(String(40))
    strip: Mapped[dict[str, Any]]                                  # the `strip` object as sent (verified)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alarm(Base):
    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(32), ForeignKey("messages.msg_id"), unique=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[str] = mapped_column(String(8))
    code: Mapped[str | None] = mapped_column(String(64))
    result_id: Mapped[str | None] = mapped_column(String(64))
    time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]]


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(32), ForeignKey("messages.msg_id"), unique=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    code: Mapped[str | None] = mapped_column(String(64))
    time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]]


class TelemetrySample(Base):
    """One telemetry message per row, for the devices page's 24 h plots (retained topic: latest only on the wire)."""
    __tablename__ = "telemetry"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    outbox_depth: Mapped[int | None]
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    quality_score: Mapped[float | None] = mapped_column(Float)     # 1 good, 0.5 acceptable, 0 unusable
    payload: Mapped[dict[str, Any]]
    __table_args__ = (UniqueConstraint("device_id", "ts", name="uq_telemetry_device_ts"),)


class CommandReply(Base):
    """Replies to fleet commands (model/install, model/rollback...): the rollout status per device."""
    __tablename__ = "command_replies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    command: Mapped[str] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    ok: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]]


class Quarantine(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    topic: Mapped[str] = mapped_column(String(300))
    device_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(40))     # oversized | not_json | schema | foreign_topic | strip | unknown_topic
    detail: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    payload_head: Mapped[str] = mapped_column(Text)     # the first 4 KiB, decoded leniently (evidence, not data)
    worker: Mapped[str | None] = mapped_column(String(80))


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[str] = mapped_column(String(32), unique=True)
    result_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(120))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime] = mapped_column(default=utcnow)
    station: Mapped[str] = mapped_column(String(120))
    published_at: Mapped[datetime | None]            # first PUBACK from the broker (None: still to send)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))    # clinician | fleet_admin | viewer
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None]


class IngestWorkerState(Base):
    """Each ingest worker's heartbeat and counters: the station's own health (and readiness for tests)."""
    __tablename__ = "ingest_workers"
    client_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    host: Mapped[str] = mapped_column(String(120))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    subscribed: Mapped[bool] = mapped_column(Boolean, default=False)
    counters: Mapped[dict[str, Any]]
