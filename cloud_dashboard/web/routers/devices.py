"""The fleet: who is online (birth / Last Will), health, model and rollout status, 24 h of telemetry; and the
station's own health (quarantine, audit) for fleet admins."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...db.models import AuditEntry, CommandReply, Device, IngestWorkerState, Quarantine, Result, TelemetrySample, iso, utcnow
from ..deps import Principal, db, require

router = APIRouter(prefix="/api/v1", tags=["devices"])


def device_json(d: Device) -> dict[str, Any]:
    t = d.telemetry or {}
    birth = d.birth or {}
    return {"device_id": d.id, "online": d.online, "availability_at": iso(d.availability_at),
            "last_seen": iso(d.last_seen), "first_seen": iso(d.first_seen), "software_version": d.software_version,
            "model_version": d.model_version, "model_sha256": d.model_sha256, "outbox_depth": d.outbox_depth,
            "frontend_status": t.get("frontend_status"), "signal_quality": t.get("signal_quality"),
            "cpu_percent": t.get("cpu_percent"), "temperature_c": t.get("temperature_c"),
            "inference_ms": t.get("inference_ms"), "telemetry_ts": t.get("ts"),
            "frontend": birth.get("frontend"), "config_version": (d.config_reported or {}).get("config_version")}


def _rollout(s: Session, device_id: str) -> dict[str, Any] | None:
    rep = s.scalar(select(CommandReply).where(CommandReply.device_id == device_id,
                                              CommandReply.command.in_(("model/install", "model/chunk",
                                                                        "model/rollback")))
                   .order_by(CommandReply.id.desc()).limit(1))
    if rep is None:
        return None
    res = rep.payload.get("result") or {}
    if rep.command == "model/chunk" and res.get("complete") is False:
        state = f"uploading {res.get('received')}/{res.get('of')}"
    else:
        state = "installed" if rep.ok else "rejected"
    return {"command": rep.command, "ok": rep.ok, "state": state, "error_code": rep.error_code,
            "at": iso(rep.received_at), "version": res.get("version"),
            "stage": ((rep.payload.get("error") or {}).get("details") or {}).get("report", {}).get("stage")}


@router.get("/devices")
def list_devices(s: Session = Depends(db), p: Principal = Depends(require("read_devices"))) -> dict[str, Any]:
    devs = s.scalars(select(Device).order_by(Device.id)).all()
    counts = dict(s.execute(select(Result.device_id, func.count()).group_by(Result.device_id)).all())
    out = []
    for d in devs:
        j = device_json(d)
        j["results"] = counts.get(d.id, 0)
        j["rollout"] = _rollout(s, d.id)
        out.append(j)
    return {"devices": out}


@router.get("/devices/{device_id}")
def get_device(device_id: str, s: Session = Depends(db), p: Principal = Depends(require("read_devices")),
               hours: float = Query(24.0, gt=0, le=24 * 14)) -> dict[str, Any]:
    d = s.get(Device, device_id)
    if d is None:
        raise HTTPException(404, f"no device {device_id!r}")
    since = utcnow() - timedelta(hours=hours)
    samples = s.scalars(select(TelemetrySample).where(TelemetrySample.device_id == device_id,
                                                      TelemetrySample.ts >= since)
                        .order_by(TelemetrySample.ts).limit(5000)).all()
    replies = s.scalars(select(CommandReply).where(CommandReply.device_id == device_id)
                        .order_by(CommandReply.id.desc()).limit(20)).all()
    return {**device_json(d), "birth": d.birth, "rollout": _rollout(s, device_id),
            "series": {"t": [iso(x.ts) for x in samples], "quality": [x.quality_score for x in samples],
                       "outbox_depth": [x.outbox_depth for x in samples], "cpu_percent": [x.cpu_percent for x in samples],
                       "temperature_c": [x.temperature_c for x in samples]},
            "replies": [{"command": r.command, "ok": r.ok, "error_code": r.error_code, "at": iso(r.received_at)}
                        for r in replies]}


@router.get("/quarantine")
def list_quarantine(s: Session = Depends(db), p: Principal = Depends(require("admin_fleet")),
                    limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    rows = s.scalars(select(Quarantine).order_by(Quarantine.id.desc()).limit(limit)).all()
    by_reason = dict(s.execute(select(Quarantine.reason, func.count()).group_by(Quarantine.reason)).all())
    workers = s.scalars(select(IngestWorkerState).order_by(IngestWorkerState.client_id)).all()
    return {"total": sum(by_reason.values()), "by_reason": by_reason,
            "not_stored": sum(int((w.counters or {}).get("quarantine_rows_suppressed", 0)) for w in workers),
            "workers": [{"client_id": w.client_id, "host": w.host, "pid": w.pid, "subscribed": w.subscribed,
                         "heartbeat_at": iso(w.heartbeat_at), "counters": w.counters} for w in workers],
            "items": [{"id": q.id, "received_at": iso(q.received_at), "topic": q.topic, "device_id": q.device_id,
                       "reason": q.reason, "detail": q.detail, "size": q.size, "worker": q.worker} for q in rows]}


@router.get("/audit")
def list_audit(s: Session = Depends(db), p: Principal = Depends(require("admin_fleet")),
               limit: int = Query(200, ge=1, le=5000)) -> dict[str, Any]:
    rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
    return {"items": [{"at": iso(a.at), "username": a.username, "action": a.action, "target": a.target,
                       "details": a.details} for a in rows]}
