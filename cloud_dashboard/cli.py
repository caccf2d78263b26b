"""ecg-cloud: the receiving station's command line. Prints for humans; --json for machines.

    ecg-cloud serve  --config FILE [--workers N]     web app + N ingest workers (migrates the database first)
    ecg-cloud ingest --config FILE [--index K]       one ingest worker (scale out: other hosts, same mqtt.group)
    ecg-cloud db upgrade|current --config FILE       Alembic migrations
    ecg-cloud user add NAME --role R [--display-name S] [--password-stdin] --config FILE
    ecg-cloud user list|passwd NAME --config FILE
    ecg-cloud token add NAME [--label L] --config FILE   API token for machines (printed once)
    ecg-cloud status --config FILE                    workers, devices, results, quarantine (from the database)
    ecg-cloud demo [--devices N] [--duration S] [--json]
(--json may stand before or after the command.)
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from typing import Any

from .config import CloudConfig, ConfigError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ecg-cloud", description="ECG triage receiving station (triage aid, not a diagnosis)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", required=True, help="station TOML (see docs/dashboard.md)")
        return p
    s = with_config(sub.add_parser("serve", help="web app + ingest workers"))
    s.add_argument("--workers", type=int, default=None, help="override ingest.workers (0: web only)")
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    i = with_config(sub.add_parser("ingest", help="one ingest worker"))
    i.add_argument("--index", type=int, default=0, help="worker index: fixed MQTT client id <prefix>-<index>")
    d = sub.add_parser("db", help="database migrations")
    dsub = d.add_subparsers(dest="db_cmd", required=True)
    with_config(dsub.add_parser("upgrade"))
    with_config(dsub.add_parser("current"))
    u = sub.add_parser("user", help="users")
    usub = u.add_subparsers(dest="user_cmd", required=True)
    ua = with_config(usub.add_parser("add"))
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=("clinician", "fleet_admin", "viewer"))
    ua.add_argument("--display-name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin (first line)")
    with_config(usub.add_parser("list"))
    up = with_config(usub.add_parser("passwd"))
    up.add_argument("name")
    up.add_argument("--password-stdin", action="store_true")
    st = with_config(sub.add_parser("status", help="the station's health from its database"))
    t = sub.add_parser("token", help="API tokens for machines")
    tsub = t.add_subparsers(dest="token_cmd", required=True)
    ta = with_config(tsub.add_parser("add"))
    ta.add_argument("name", help="user the token acts as")
    ta.add_argument("--label", default="api")
    dm = sub.add_parser("demo", help="local broker + dashboard + N simulated ambulances")
    dm.add_argument("--devices", type=int, default=3)
    dm.add_argument("--duration", type=float, default=0, help="seconds to run (0: until Ctrl-C)")
    dm.add_argument("--port", type=int, default=0, help="dashboard port (0: a free one)")
    dm.add_argument("--data-dir", help="keep the demo's files here (default: a temporary directory)")
    for p in {id(x): x for x in (s, i, dm, st, *dsub.choices.values(), *usub.choices.values(),
                                  *tsub.choices.values())}.values():
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return ap


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    a, b = getpass.getpass("password: "), getpass.getpass("again: ")
    if a != b:
        raise SystemExit("passwords differ")
    return a


def _out(a: argparse.Namespace, doc: Any, human: str) -> None:
    print(json.dumps(doc) if a.json else human, flush=True)


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return _run(a)
    except ConfigError as exc:
        print(f"ecg-cloud: {exc}", file=sys.stderr)
        return 2


def _run(a: argparse.Namespace) -> int:
    if a.cmd == "demo":
        from .demo import run_demo
        return run_demo(devices=a.devices, duration=a.duration, as_json=a.json, port=a.port, data_dir=a.data_dir)
    cfg = CloudConfig.load(a.config)
    if a.cmd == "serve":
        from .server import serve
        return serve(cfg, workers=a.workers, ready_file=a.ready_file)
    if a.cmd == "ingest":
        from .ingest.worker import run_worker
        return run_worker(cfg, a.index)
    if a.cmd == "db":
        from .db import migrate
        if a.db_cmd == "upgrade":
            migrate.upgrade(cfg.database_url)
        rev = migrate.current(cfg.database_url)
        _out(a, {"revision": rev, "head": migrate.head()}, f"database at revision {rev} (head {migrate.head()})")
        return 0
    if a.cmd == "status":
        return _status(a, cfg)
    from sqlalchemy import select

    from .db.engine import make_engine, session_factory
    from .db.models import User
    from .users import UserError, add_user, new_token, set_password
    engine = make_engine(cfg.database_url)
    try:
        with session_factory(engine)() as s:
            if a.cmd == "user" and a.user_cmd == "add":
                u = add_user(s, a.name, _password(a.password_stdin), a.role, a.display_name)
                s.commit()
                _out(a, {"username": u.username, "role": u.role}, f"added {u.username} ({u.role})")
            elif a.cmd == "user" and a.user_cmd == "list":
                users = s.scalars(select(User).order_by(User.username)).all()
                docs = [{"username": u.username, "display_name": u.display_name, "role": u.role,
                         "disabled": u.disabled} for u in users]
                _out(a, docs, "\n".join(f"{u.username:20} {u.role:12} {u.display_name}" for u in users) or "no users")
            elif a.cmd == "user" and a.user_cmd == "passwd":
                set_password(s, a.name, _password(a.password_stdin))
                s.commit()
                _out(a, {"username": a.name, "ok": True}, f"password of {a.name} changed")
            elif a.cmd == "token":
                secret = new_token(s, a.name, a.label)
                s.commit()
                _out(a, {"username": a.name, "token": secret}, secret)
    except UserError as exc:
        print(f"ecg-cloud: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _status(a: argparse.Namespace, cfg: CloudConfig) -> int:
    """Exit 0 when every ingest worker has a heartbeat younger than 30 s and is subscribed, else 1."""
    from sqlalchemy import func, select

    from .db.engine import make_engine, session_factory
    from .db.models import Device, IngestWorkerState, Quarantine, Result, iso, utc, utcnow
    engine = make_engine(cfg.database_url)
    try:
        with session_factory(engine)() as s:
            now = utcnow()
            workers = [{"client_id": w.client_id, "host": w.host, "pid": w.pid, "subscribed": w.subscribed,
                        "heartbeat_age_s": round((now - utc(w.heartbeat_at)).total_seconds(), 1),
                        "counters": w.counters} for w in s.scalars(select(IngestWorkerState))]
            doc = {"station": cfg.station.name, "database": cfg.database_url.split("://")[0],
                   "devices": s.scalar(select(func.count()).select_from(Device)),
                   "online": s.scalar(select(func.count()).select_from(Device).where(Device.online.is_(True))),
                   "results": s.scalar(select(func.count()).select_from(Result)),
                   "unreviewed_suspected_mi": s.scalar(select(func.count()).select_from(Result).where(
                       Result.reviewed.is_(False), Result.suspected_mi.is_(True))),
                   "quarantined": s.scalar(select(func.count()).select_from(Quarantine)),
                   "last_result": iso(s.scalar(select(func.max(Result.received_at)))), "workers": workers}
    finally:
        engine.dispose()
    healthy = bool(workers) and all(w["subscribed"] and w["heartbeat_age_s"] < 30 for w in workers)
    doc["healthy"] = healthy
    human = (f"{doc['station']} ({doc['database']}): {doc['online']}/{doc['devices']} devices online, {doc['results']} "
             f"results ({doc['unreviewed_suspected_mi']} unreviewed suspected MI), {doc['quarantined']} quarantined, "
             f"last result {doc['last_result']}\n" + "\n".join(
                 f"  worker {w['client_id']}@{w['host']} pid {w['pid']}: {'subscribed' if w['subscribed'] else 'NOT subscribed'}"
                 f", heartbeat {w['heartbeat_age_s']} s ago, {w['counters']}" for w in workers) +
             ("" if healthy else "\n  NOT HEALTHY: an ingest worker is missing, stale or unsubscribed"))
    _out(a, doc, human)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
