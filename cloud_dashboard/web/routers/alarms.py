"""Alarms the devices raised (VF/VT, asystole, suspected MI, technical): the worklist shows the recent ones above
the results, because a crew's alarm is news before any clinician has opened a case."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from ... import NOTICE
from ...db.models import Alarm, iso, utcnow
from ..deps import Principal, db, require

router = APIRouter(prefix="/api/v1", tags=["alarms"])


@router.get("/alarms")
def list_alarms(s: Session = Depends(db), p: Principal = Depends(require("read_results")),
                minutes: float = Query(60.0, gt=0, le=60 * 24 * 30), kind: str | None = None,
                device: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    q = select(Alarm).where(Alarm.received_at >= utcnow() - timedelta(minutes=minutes))
    if device:
        q = q.where(Alarm.device_id == device)
    rows = s.scalars(q.order_by(Alarm.received_at.desc()).limit(limit)).all()
    out = []
    for a in rows:
        body = a.payload.get("alarm") or {}
        if kind and body.get("kind") != kind:
            continue
        out.append({"device_id": a.device_id, "priority": a.priority, "code": a.code, "kind": body.get("kind"),
                    "message": body.get("message"), "time": iso(a.time), "received_at": iso(a.received_at),
                    "result_id": a.result_id, "historical": bool(a.payload.get("historical"))})
    return {"notice": NOTICE, "alarms": out}
