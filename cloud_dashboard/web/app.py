"""create_app(config): the FastAPI application (FastAPI's "bigger applications" layout: routers per resource,
dependencies for auth and the database session). The MQTT ingest is NOT here: it runs in its own processes
(cloud_dashboard.ingest.worker), so a slow request never delays intake and vice versa."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from .. import NOTICE, __version__
from ..config import CloudConfig
from ..db.engine import make_engine, session_factory
from .routers import alarms, auth, devices, live, pages, results
from .routers.pages import STATIC

#: Routes anyone may call: they carry no patient or fleet data (checked by tests/test_cloud_security.py).
PUBLIC_PATHS = {"/login", "/auth/csrf", "/auth/login", "/healthz", "/static", "/"}


def all_routes(app: FastAPI) -> list[Any]:
    """Every route and mount of the app, flattened (FastAPI >= 0.16x keeps included routers as one entry each).
    The security test walks this list so that no route can be added without its authentication being checked."""
    out: list[Any] = []

    def walk(routes: list[Any]) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            else:
                out.append(r)
    walk(app.routes)
    return out


def create_app(config: CloudConfig, sessions: sessionmaker[Session] | None = None) -> FastAPI:
    app = FastAPI(title="ECG triage receiving station", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, description=NOTICE)
    if sessions is None:
        engine = make_engine(config.database_url)
        sessions = session_factory(engine)
        app.router.on_shutdown.append(engine.dispose)
    app.state.config = config
    app.state.sessions = sessions
    # A case's 12 leads as JSON are ~350 kB; gzip level 5 makes them ~130 kB in ~18 ms (level 9, Starlette's
    # default, took 350 ms for 2 % less).
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any):
        response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                                "frame-ancestors 'none'")
        if request.url.path.startswith("/api/"):
            h.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "station": config.station.name, "version": __version__}

    for r in (auth.router, results.router, alarms.router, devices.router, live.router, pages.router):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
