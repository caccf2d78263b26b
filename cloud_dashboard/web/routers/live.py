"""Live updates without reloading: Server-Sent Events.

Why polling the database (every 0.5 s, one cheap query) rather than a message bus: the ingest workers run in
other processes, possibly on other hosts; the database is the one thing they all share. The browser re-fetches
what changed when the version it is sent moves.
"""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from ...db.models import Alarm, Device, Quarantine, Result, Review, iso
from ..deps import Principal, principal

router = APIRouter(prefix="/api/v1", tags=["live"])


def versions(factory) -> dict:  # noqa: ANN001
    with factory() as s:
        return {"results": s.scalar(select(func.max(Result.id))) or 0,
                "reviews": s.scalar(select(func.max(Review.id))) or 0,
                "alarms": s.scalar(select(func.max(Alarm.id))) or 0,
                "devices": iso(s.scalar(select(func.max(Device.last_seen)))),
                "online": s.scalar(select(func.count()).select_from(Device).where(Device.online.is_(True))) or 0,
                "quarantine": s.scalar(select(func.max(Quarantine.id))) or 0}


@router.get("/live")
async def live(request: Request, p: Principal = Depends(principal), interval: float = 0.5) -> StreamingResponse:
    factory = request.app.state.sessions
    interval = min(max(interval, 0.1), 10.0)

    async def stream():
        last = None
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            v = await run_in_threadpool(versions, factory)
            if v != last:
                last = v
                yield f"event: change\ndata: {json.dumps(v)}\n\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
