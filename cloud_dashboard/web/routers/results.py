"""Results: the worklist, history/search, one case with its 12-lead strip, reviews, and the WFDB + JSON export.

Worklist order: unreviewed first; among them suspected MI first; then by priority (high -> none); then newest
acquisition first (a clinic's backlog of old routine ECGs must not push down a live one). Every response that
carries a result carries the disclaimer.
"""
from __future__ import annotations

import io
import json
import tempfile
import uuid
import zipfile
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, defer

from edge_app.uplink.strip_codec import StripError, decode_strip

from ... import NOTICE
from ...db.models import Message, Result, Review, Strip, iso, utcnow
from ...users import audit
from ..deps import Principal, db, require

router = APIRouter(prefix="/api/v1/results", tags=["results"])
VERDICTS = ("confirmed", "not_confirmed", "repeat_ecg")
COUNT_CAP = 1000


def row_summary(r: Result, has_strip: bool | None = None) -> dict[str, Any]:
    return {"result_id": r.result_id, "device_id": r.device_id, "acquired_at": iso(r.acquired_at),
            "received_at": iso(r.received_at), "delay_s": r.delay_s, "priority": r.priority,
            "triage_level": r.triage_level, "suspected_mi": r.suspected_mi, "findings": r.findings.split(),
            "heart_rate_bpm": r.heart_rate_bpm, "quality": r.quality, "historical": r.historical,
            "reviewed": r.reviewed, "verdict": r.verdict, "model_version": r.model_version,
            "has_strip": has_strip}


def _parse_dt(s: str | None, name: str) -> datetime | None:
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{name}: not an ISO 8601 time, e.g. 2026-12-04T14:00:00Z") from None
    from ...db.models import utc
    return utc(dt)


@router.get("")
def list_results(s: Session = Depends(db), p: Principal = Depends(require("read_results")),
                 device: str | None = None, since: str | None = None, until: str | None = None,
                 finding: str | None = Query(None, pattern=r"^[A-Za-z_]{1,16}$"),
                 level: str | None = None, reviewed: bool | None = None, suspected_mi: bool | None = None,
                 order: Literal["worklist", "recent"] = "worklist",
                 limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    conds = []
    if device:
        conds.append(Result.device_id == device)
    if (t := _parse_dt(since, "since")) is not None:
        conds.append(Result.acquired_at >= t)
    if (t := _parse_dt(until, "until")) is not None:
        conds.append(Result.acquired_at < t)
    if finding:
        conds.append(Result.findings.like(f"% {finding} %"))
    if level:
        conds.append(Result.triage_level == level)
    if reviewed is not None:
        conds.append(Result.reviewed.is_(reviewed))
    if suspected_mi is not None:
        conds.append(Result.suspected_mi.is_(suspected_mi))
    # The list never needs the result JSON (~5 kB a row): deferred, so the page reads index + small columns.
    q = select(Result).options(defer(Result.payload)).where(and_(*conds))
    if order == "worklist":
        q = q.order_by(Result.reviewed, Result.suspected_mi.desc(), Result.priority_rank, Result.acquired_at.desc())
    else:
        q = q.order_by(Result.acquired_at.desc())
    rows = s.scalars(q.limit(limit).offset(offset)).all()
    ids = [r.result_id for r in rows]
    with_strip = set(s.scalars(select(Strip.result_id).where(Strip.result_id.in_(ids)))) if ids else set()
    # Counting every match of a search (e.g. a finding over 100,000 results) is a full scan; the count stops at
    # COUNT_CAP + 1 and says "at least" beyond it.
    total = s.scalar(select(func.count()).select_from(
        select(Result.id).where(and_(*conds)).limit(COUNT_CAP + 1).subquery()))
    return {"notice": NOTICE, "total": min(total, COUNT_CAP), "total_is_lower_bound": total > COUNT_CAP,
            "limit": limit, "offset": offset,
            "results": [row_summary(r, r.result_id in with_strip) for r in rows]}


def _get(s: Session, result_id: str) -> Result:
    r = s.scalar(select(Result).where(Result.result_id == result_id))
    if r is None:
        raise HTTPException(404, f"no result {result_id!r}")
    return r


def strip_json(st: Strip) -> dict[str, Any]:
    """The strip as the API serves it: all 12 leads (derived limb leads computed from the measured ones) in uV."""
    try:
        decoded = decode_strip(st.strip)
    except StripError as exc:          # verified at ingest; a failure now means the database was altered
        raise HTTPException(500, f"stored strip fails verification: {exc}") from None
    leads = decoded.leads_uv()
    return {"fs": decoded.fs, "leads": list(leads), "samples_uv": [leads[n] for n in leads], "units": "uV",
            "n_samples": decoded.n_samples, "t0": decoded.t0, "start_index": decoded.start_index,
            "measured_leads": list(decoded.leads), "received_at": iso(st.received_at)}


@lru_cache(maxsize=8)
def _manifest_thresholds(version: str | None) -> dict[str, float]:
    """Per-class thresholds of the shipped model (the result itself lists them only for findings)."""
    try:
        from edge_app.config import load_config
        m = json.loads(Path(load_config(None).manifest_path).read_text())
    except Exception:                  # noqa: BLE001 -- thresholds are a display aid; findings carry their own
        return {}
    return dict(m.get("thresholds") or {}) if m.get("model_version") == version else {}


def review_json(rv: Review) -> dict[str, Any]:
    return {"review_id": rv.review_id, "verdict": rv.verdict, "text": rv.text, "reviewer": rv.reviewer,
            "reviewed_at": iso(rv.reviewed_at), "station": rv.station, "sent_to_device_at": iso(rv.published_at)}


@router.get("/{result_id}")
def get_result(result_id: str, s: Session = Depends(db), p: Principal = Depends(require("read_results")),
               strip: bool = True) -> dict[str, Any]:
    r = _get(s, result_id)
    st = s.scalar(select(Strip).where(Strip.result_id == result_id).order_by(Strip.id).limit(1))
    reviews = s.scalars(select(Review).where(Review.result_id == result_id).order_by(Review.reviewed_at)).all()
    msgs = s.scalars(select(Message).where(Message.result_id == result_id).order_by(Message.received_at)).all()
    thresholds = dict(_manifest_thresholds(r.model_version))
    for f in (r.payload.get("explanation") or {}).get("findings", []):
        thresholds[f.get("cls")] = f.get("threshold")
    return {"notice": NOTICE, **row_summary(r, st is not None), "result": r.payload, "thresholds": thresholds,
            "strip": strip_json(st) if (st is not None and strip) else None,
            "reviews": [review_json(rv) for rv in reviews],
            "messages": [{"msg_id": m.msg_id, "kind": m.kind, "stored_at": iso(m.received_at)} for m in msgs]}


class ReviewIn(BaseModel):
    verdict: Literal["confirmed", "not_confirmed", "repeat_ecg"]
    text: str | None = Field(None, max_length=2000)


@router.post("/{result_id}/review", status_code=201)
def post_review(result_id: str, body: ReviewIn, request: Request, s: Session = Depends(db),
                p: Principal = Depends(require("review"))) -> dict[str, Any]:
    r = _get(s, result_id)
    rv = Review(review_id=uuid.uuid4().hex, result_id=r.result_id, device_id=r.device_id, verdict=body.verdict,
                text=(body.text or "").strip() or None, reviewer=p.user.display_name, user_id=p.user.id,
                reviewed_at=utcnow(), station=request.app.state.config.station.name)
    s.add(rv)
    r.reviewed, r.verdict = True, body.verdict
    audit(s, p.username, "review", r.result_id, {"verdict": body.verdict, "review_id": rv.review_id,
                                                 "device_id": r.device_id, "via": p.via})
    s.commit()
    return {"notice": NOTICE, **review_json(rv)}


@router.get("/{result_id}/export")
def export_case(result_id: str, s: Session = Depends(db), p: Principal = Depends(require("read_results"))) -> Response:
    """The case as a zip: WFDB record (12 leads, format 16, 1 uV per ADC unit) + JSON (result, reviews)."""
    import numpy as np
    import wfdb
    doc = get_result(result_id, s, p, strip=False)
    st = s.scalar(select(Strip).where(Strip.result_id == result_id).order_by(Strip.id).limit(1))
    buf = io.BytesIO()
    name = "ecg_" + "".join(c for c in result_id if c.isalnum())[:24]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}.json", json.dumps(doc, indent=1))
        if st is not None:
            decoded = decode_strip(st.strip)
            x = decoded.twelve_lead_uv()
            from firmware_bridge.leads import LEADS
            with tempfile.TemporaryDirectory() as tmp:
                wfdb.wrsamp(name, fs=decoded.fs, units=["uV"] * 12, sig_name=list(LEADS),
                            d_signal=np.round(x).astype(np.int64).clip(-32767, 32767).astype(np.int16),
                            fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12,
                            comments=[f"device {doc['device_id']} result {result_id}", NOTICE], write_dir=tmp)
                for ext in ("hea", "dat"):
                    z.write(Path(tmp) / f"{name}.{ext}", f"{name}.{ext}")
    audit(s, p.username, "export", result_id, None)
    s.commit()
    return Response(buf.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})
