"""The web app and its security, on SQLite and PostgreSQL (FastAPI's TestClient on the real app + real database,
filled through the real intake rules with real device messages).

The route enumeration walks EVERY route the app has: a new patient-data route that forgets its auth dependency
fails here without anyone having to remember to add a test for it.
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from cloud_dashboard.config import CloudConfig, ConfigError, DatabaseConfig, HttpConfig, StationConfig
from cloud_dashboard.db.engine import make_engine, session_factory
from cloud_dashboard.db.migrate import upgrade
from cloud_dashboard.ingest.store import Ingestor
from cloud_dashboard.testing import provision, result_messages
from cloud_dashboard.web.app import PUBLIC_PATHS, all_routes, create_app
from cloud_support import database_url, mi_record, norm_record, pg_server  # noqa: F401


@pytest.fixture
def station(tmp_path, database_url, mi_record, norm_record):
    cfg = CloudConfig(station=StationConfig(name="St Test ED", data_dir=str(tmp_path)),
                      database=DatabaseConfig(url=database_url), http=HttpConfig(login_max_failures=3))
    users, tokens = provision(cfg)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    ing = Ingestor("ecg", "St Test ED")
    ids = {}
    with factory() as s:
        for name, rec, dev in (("mi", mi_record, "amb-1"), ("norm", norm_record, "amb-2"), ("norm2", norm_record, "amb-1")):
            tri, strip = result_messages(*rec, device_id=dev)
            for leaf, doc in (("triage", tri), ("strip", strip)):
                assert ing.handle(s, f"ecg/{dev}/{leaf}", json.dumps(doc).encode()).status == "stored"
            ids[name] = tri["result"]["id"]
        s.commit()
    app = create_app(cfg, factory)
    with TestClient(app) as client:
        yield {"client": client, "app": app, "users": users, "tokens": tokens, "ids": ids, "cfg": cfg}
    engine.dispose()


def bearer(st, role):
    return {"Authorization": f"Bearer {st['tokens'][role]}"}


def login(client, username, password):
    csrf = client.get("/auth/csrf").json()["csrf_token"]
    return client.post("/auth/login", json={"username": username, "password": password},
                       headers={"X-CSRF-Token": csrf})


def anonymous_violations(client, app, sample_id: str) -> tuple[int, list[str]]:
    """(routes checked, routes that did not refuse an anonymous caller) over EVERY route of the app."""
    checked, bad = 0, []
    for route in all_routes(app):
        if isinstance(route, Mount):
            if route.path not in PUBLIC_PATHS:
                bad.append(f"mount {route.path}")
            continue
        if route.path in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", sample_id, route.path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            r = client.request(method, path, follow_redirects=False,
                               json={} if method in ("POST", "PUT", "PATCH") else None)
            checked += 1
            if path.startswith("/api/") or path.startswith("/auth/"):
                ok = r.status_code == 401
            else:
                ok = r.status_code in (303, 307) and r.headers.get("location") == "/login"
            if not ok:
                bad.append(f"{method} {route.path} -> {r.status_code}")
    return checked, bad


def test_every_route_refuses_anonymous_requests(station):
    """Enumerate the app's routes; every one outside PUBLIC_PATHS must refuse an anonymous caller."""
    client, app = station["client"], station["app"]
    checked, bad = anonymous_violations(client, app, station["ids"]["mi"])
    assert bad == [] and checked >= 12
    assert client.get("/healthz").json()["ok"] is True
    # wrong or revoked credentials are anonymous too
    assert client.get("/api/v1/results", headers={"Authorization": "Bearer ecgt_forged"}).status_code == 401
    assert client.get("/api/v1/results", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert client.get("/api/v1/results", cookies={"ecg_session": "forged"}).status_code == 401


def test_the_enumeration_catches_a_route_without_auth(station):
    """The check above can fail: a route added without the auth dependency is reported."""
    from fastapi import APIRouter
    leaky = APIRouter()

    @leaky.get("/api/v1/leak/{result_id}")
    def leak(result_id: str) -> dict:
        return {"result_id": result_id}
    station["app"].include_router(leaky)
    _, bad = anonymous_violations(station["client"], station["app"], station["ids"]["mi"])
    assert bad == ["GET /api/v1/leak/{result_id} -> 200"]


def test_api_results_worklist_order_filters_and_strip(station):
    client, ids = station["client"], station["ids"]
    r = client.get("/api/v1/results", headers=bearer(station, "viewer"))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["total"] == 3 and "not a diagnosis" in body["notice"]
    assert body["results"][0]["result_id"] == ids["mi"] and body["results"][0]["suspected_mi"]
    assert client.get("/api/v1/results?device=amb-2", headers=bearer(station, "viewer")).json()["total"] == 1
    assert [x["result_id"] for x in client.get("/api/v1/results?finding=MI", headers=bearer(station, "viewer"))
            .json()["results"]] == [ids["mi"]]
    assert client.get("/api/v1/results?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z",
                      headers=bearer(station, "viewer")).json()["total"] == 0
    assert client.get("/api/v1/results?since=yesterday", headers=bearer(station, "viewer")).status_code == 422
    case = client.get(f"/api/v1/results/{ids['mi']}", headers=bearer(station, "viewer")).json()
    strip = case["strip"]
    assert strip["fs"] == 500.0 and strip["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF",
                                                       "V1", "V2", "V3", "V4", "V5", "V6"]
    x = np.array(strip["samples_uv"])
    assert x.shape == (12, 5000)
    np.testing.assert_allclose(x[2], x[1] - x[0])                  # III = II - I (derived from the measured leads)
    np.testing.assert_allclose(x[3], -(x[0] + x[1]) / 2)           # aVR
    assert case["thresholds"]["MI"] == pytest.approx(case["result"]["explanation"]["findings"][0]["threshold"])
    assert case["result"]["explanation"]["findings"][0]["cam"]
    assert [m["kind"] for m in case["messages"]] == ["triage", "strip"]
    assert client.get("/api/v1/results/nope", headers=bearer(station, "viewer")).status_code == 404


def test_roles(station):
    client, rid = station["client"], station["ids"]["mi"]
    assert client.get("/api/v1/results", headers=bearer(station, "fleet_admin")).status_code == 403
    assert client.get("/api/v1/devices", headers=bearer(station, "fleet_admin")).status_code == 200
    assert client.get("/api/v1/quarantine", headers=bearer(station, "viewer")).status_code == 403
    assert client.post(f"/api/v1/results/{rid}/review", json={"verdict": "confirmed"},
                       headers=bearer(station, "viewer")).status_code == 403
    assert client.post(f"/api/v1/results/{rid}/review", json={"verdict": "maybe"},
                       headers=bearer(station, "clinician")).status_code == 422
    r = client.post(f"/api/v1/results/{rid}/review", json={"verdict": "repeat_ecg", "text": "noisy V1"},
                    headers=bearer(station, "clinician"))
    assert r.status_code == 201 and r.json()["reviewer"] == "Dr Demo Cardio"
    wl = client.get("/api/v1/results", headers=bearer(station, "viewer")).json()["results"]
    assert wl[-1]["result_id"] == rid and wl[-1]["verdict"] == "repeat_ecg"   # reviewed cases sink
    audit = client.get("/api/v1/audit", headers=bearer(station, "fleet_admin")).json()["items"]
    assert audit[0]["action"] == "review" and audit[0]["username"] == "dr.demo" and audit[0]["target"] == rid


def test_alarms_from_the_field(station, mi_record):
    from cloud_dashboard.testing import envelope
    r = mi_record[0]
    alarm = envelope("ecg.alarm/1", "amb-1", "alarm", dict(r["alarms"][0], device_id="amb-1"), "high")
    engine = make_engine(station["cfg"].database_url)
    with session_factory(engine)() as s:
        assert Ingestor("ecg", "St").handle(s, "ecg/amb-1/alarm", json.dumps(alarm).encode()).status == "stored"
        s.commit()
    engine.dispose()
    got = station["client"].get("/api/v1/alarms?kind=physiological", headers=bearer(station, "viewer")).json()
    assert [(a["device_id"], a["code"], a["priority"]) for a in got["alarms"]] == [("amb-1", "suspected_mi", "high")]
    assert station["client"].get("/api/v1/alarms?kind=technical", headers=bearer(station, "viewer")).json()["alarms"] == []
    assert station["client"].get("/api/v1/alarms", headers=bearer(station, "fleet_admin")).status_code == 403


def test_session_cookie_csrf_and_login_throttling(station):
    client, rid = station["client"], station["ids"]["norm"]
    name, password = station["users"]["clinician"]
    # login itself needs the double-submit token
    assert client.post("/auth/login", json={"username": name, "password": password}).status_code == 403
    r = login(client, name, password)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "ecg_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    me = client.get("/api/v1/me").json()
    assert me["role"] == "clinician" and me["csrf_token"]
    # a state change with the cookie but without the CSRF token is refused; with it, accepted
    assert client.post(f"/api/v1/results/{rid}/review", json={"verdict": "not_confirmed"}).status_code == 403
    assert client.post(f"/api/v1/results/{rid}/review", json={"verdict": "not_confirmed"},
                       headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post(f"/api/v1/results/{rid}/review", json={"verdict": "not_confirmed"},
                       headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 201
    assert client.get("/worklist", follow_redirects=False).status_code == 200
    assert client.post("/auth/logout", headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 200
    assert client.get("/api/v1/me").status_code == 401
    # throttling: after login_max_failures (3) failures even the right password is refused for a while
    for _ in range(3):
        assert login(client, name, "wrong-password").status_code == 401
    assert login(client, name, password).status_code == 429


def test_export_is_wfdb_and_json(station, tmp_path):
    import wfdb
    client, rid = station["client"], station["ids"]["mi"]
    r = client.get(f"/api/v1/results/{rid}/export", headers=bearer(station, "viewer"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = sorted(z.namelist())
    assert [n.rsplit(".", 1)[1] for n in names] == ["dat", "hea", "json"]
    z.extractall(tmp_path)
    rec = wfdb.rdrecord(str(tmp_path / names[0].rsplit(".", 1)[0]))
    case = client.get(f"/api/v1/results/{rid}", headers=bearer(station, "viewer")).json()
    assert rec.fs == 500 and rec.sig_name == case["strip"]["leads"] and rec.units == ["uV"] * 12
    np.testing.assert_allclose(rec.p_signal.T, np.round(np.array(case["strip"]["samples_uv"])), atol=0.51)
    doc = json.loads(z.read(names[2]))
    assert doc["result_id"] == rid and "not a diagnosis" in doc["notice"]


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "s.toml"
    for text, key in (('[mqtt]\nport = "x"\n', "mqtt.port"), ("[http]\nprot = 1\n", "http.prot"),
                      ('[database]\nurl = "mysql://x"\n', "database.url"), ("[ingest]\nworkers = 0\n", "ingest.workers"),
                      ("[oops]\n", "oops"), ('[database]\nurl = "postgresql://h/db"\n', "database.url")):
        bad.write_text(text)
        with pytest.raises(ConfigError) as e:
            CloudConfig.load(bad)
        assert e.value.key == key and "Fix:" in str(e.value)


def test_cli_db_user_token(tmp_path, database_url, capsys, monkeypatch):
    from cloud_dashboard.cli import main
    from cloud_dashboard.config import write_config
    cfg = CloudConfig(station=StationConfig(data_dir=str(tmp_path)), database=DatabaseConfig(url=database_url))
    path = str(write_config(tmp_path / "station.toml", cfg))
    assert main(["--json", "db", "upgrade", "--config", path]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["revision"] == "0001"
    monkeypatch.setattr("sys.stdin", io.StringIO("first-password\n"))
    assert main(["user", "add", "alice", "--role", "clinician", "--display-name", "Dr Alice", "--password-stdin",
                 "--config", path]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert main(["user", "add", "bob", "--role", "viewer", "--password-stdin", "--config", path]) == 1   # too short
    monkeypatch.setattr("sys.stdin", io.StringIO("second-password\n"))
    assert main(["user", "passwd", "alice", "--password-stdin", "--config", path]) == 0
    capsys.readouterr()
    assert main(["--json", "user", "list", "--config", path]) == 0
    users = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert users == [{"username": "alice", "display_name": "Dr Alice", "role": "clinician", "disabled": False}]
    assert main(["--json", "token", "add", "alice", "--config", path]) == 0
    token = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["token"]
    app = create_app(CloudConfig.load(path))
    with TestClient(app) as c:
        assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "alice"
        assert login(c, "alice", "first-password").status_code == 401
        assert login(c, "alice", "second-password").status_code == 200
        c.app.state.sessions.kw["bind"].dispose()
