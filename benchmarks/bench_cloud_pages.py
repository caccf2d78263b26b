"""Worklist, search and case load times with 100,000 results stored (SQLite and PostgreSQL).

    python benchmarks/bench_cloud_pages.py [--results 100000] [--db sqlite,postgresql] [--repeat 15] [--json]

Method: a fresh, migrated database is filled directly (bulk INSERTs, not through MQTT: this measures reading) with
--results results spread over 200 devices and 30 days -- each row carries the REAL result JSON of a built-in PTB-XL
record (~5 kB, per-lead quality and Grad-CAM) -- 5 % suspected MI, 30 % reviewed, plus 200 strips. Then the app
(create_app, in-process via Starlette's TestClient: app + database, no network) answers, --repeat times each:
the worklist (first 100), a deep page (offset 5,000), history of one device over a week, search by finding,
a case with its 12-lead strip (decoded + 12 leads as JSON), and the case export (WFDB + JSON zip).
Median and p95 per request.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cloud_bench_support import PostgresServer, load, new_database, pct, templates

from cloud_dashboard.config import CloudConfig, DatabaseConfig, StationConfig  # noqa: E402
from cloud_dashboard.db.engine import make_engine, session_factory  # noqa: E402
from cloud_dashboard.db.migrate import upgrade  # noqa: E402
from cloud_dashboard.db.models import Message, Result, Strip  # noqa: E402
from cloud_dashboard.testing import provision, result_messages  # noqa: E402


def fill(url: str, n: int, tmpl: list) -> list[str]:  # noqa: ANN001
    engine = make_engine(url)
    rng = random.Random(12)
    now = datetime.now(timezone.utc)
    mi_r, norm_r = tmpl[0][0], tmpl[1][0]
    with_strip = []
    t0 = time.monotonic()
    with engine.begin() as conn:
        for start in range(0, n, 5000):
            msgs, rows = [], []
            for i in range(start, min(n, start + 5000)):
                mi = rng.random() < 0.05
                r = dict(mi_r if mi else norm_r)
                rid, mid, dev = str(uuid.uuid4()), uuid.uuid4().hex, f"amb-{rng.randrange(200):03d}"
                acq = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
                r["id"], r["device_id"] = rid, dev
                msgs.append({"msg_id": mid, "device_id": dev, "kind": "triage", "seq": i, "priority": "high" if mi else "none",
                             "created_at": acq, "received_at": acq + timedelta(seconds=2), "result_id": rid, "size": 5000,
                             "worker": "bench"})
                reviewed = rng.random() < 0.3
                rows.append({"result_id": rid, "msg_id": mid, "device_id": dev, "priority": "high" if mi else "none",
                             "priority_rank": 0 if mi else 3, "triage_level": "high" if mi else "none", "suspected_mi": mi,
                             "findings": " MI " if mi else " ", "quality": "good", "heart_rate_bpm": 72.0,
                             "acquired_at": acq, "created_at": acq, "received_at": acq + timedelta(seconds=2),
                             "delay_s": 2.0, "historical": False, "reviewed": reviewed,
                             "verdict": "confirmed" if reviewed else None, "model_version": "1.0.0", "payload": r})
                if len(with_strip) < 200 and rng.random() < 0.01:
                    with_strip.append((rid, dev, mi))
            conn.execute(Message.__table__.insert(), msgs)
            conn.execute(Result.__table__.insert(), rows)
        for rid, dev, mi in with_strip:
            _, strip = result_messages(*(tmpl[0] if mi else tmpl[1]), device_id=dev)
            strip["strip"]["result_id"] = rid
            conn.execute(Message.__table__.insert(), [{"msg_id": strip["msg_id"], "device_id": dev, "kind": "strip",
                                                       "received_at": now, "result_id": rid, "size": 25000}])
            conn.execute(Strip.__table__.insert(), [{"msg_id": strip["msg_id"], "result_id": rid, "device_id": dev,
                                                     "fs": 500.0, "n_samples": 5000, "t0": strip["strip"]["t0"],
                                                     "strip": strip["strip"], "received_at": now}])
    if url.startswith("postgresql"):      # what autovacuum would do after a bulk load: fresh planner statistics
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"  filled {n} results in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return [rid for rid, _, _ in with_strip]


def measure(url: str, repeat: int, case_ids: list[str], work: Path) -> dict:
    from fastapi.testclient import TestClient

    from cloud_dashboard.web.app import create_app
    cfg = CloudConfig(station=StationConfig(data_dir=str(work)), database=DatabaseConfig(url=url))
    _, tokens = provision(cfg)
    h = {"Authorization": f"Bearer {tokens['viewer']}"}
    since = (datetime.now(timezone.utc) - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    reqs = {"worklist (first 100)": "/api/v1/results?order=worklist&limit=100",
            "worklist page at offset 5000": "/api/v1/results?order=worklist&limit=100&offset=5000",
            "history: one device, last 7 days": f"/api/v1/results?order=recent&device=amb-007&since={since}",
            "search: finding MI, unreviewed": "/api/v1/results?order=recent&finding=MI&reviewed=false&limit=100",
            "case with 12-lead strip": "/api/v1/results/{id}",
            "case export (WFDB + JSON zip)": "/api/v1/results/{id}/export",
            "worklist page HTML (session)": None}
    out = {}
    app = create_app(cfg)
    with TestClient(app) as c:
        for name, path in reqs.items():
            if path is None:
                continue
            times = []
            for i in range(repeat):
                p = path.replace("{id}", case_ids[i % len(case_ids)])
                t = time.perf_counter()
                r = c.get(p, headers=h)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (p, r.status_code, r.text[:200])
            out[name] = {"median_ms": round(pct(times, 50) * 1000, 1), "p95_ms": round(pct(times, 95) * 1000, 1),
                         "bytes": len(r.content)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmpl = templates()
    doc = {"benchmark": "cloud_pages", "results": a.results, "by_db": {}}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        work = Path(tmp)
        kinds = a.db.split(",")
        pg = PostgresServer(work).start() if "postgresql" in kinds else None
        try:
            for kind in kinds:
                url = new_database(kind, work, pg)
                upgrade(url)
                ids = fill(url, a.results, tmpl)
                doc["by_db"][kind] = measure(url, a.repeat, ids, work / kind)
                if not a.json:
                    for name, m in doc["by_db"][kind].items():
                        print(f"{kind:10} {name:36} median {m['median_ms']:7.1f} ms  p95 {m['p95_ms']:7.1f} ms  "
                              f"({m['bytes'] // 1024} kB)", flush=True)
        finally:
            if pg:
                pg.stop()
    doc["load"] = load()
    print(json.dumps(doc) if a.json else f"load {doc['load']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
