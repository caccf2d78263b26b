"""Publish on the device -> visible in the clinician's worklist: median and p99.

    python benchmarks/bench_cloud_latency.py [--results 120] [--period 0.5] [--db sqlite|postgresql] [--json]

Method: `ecg-cloud serve` (web + 1 ingest worker) on a fresh database; a device publishes a real result (+ its
strip) every --period seconds at QoS 1; a watcher does what the worklist page does -- listens to the live
stream (SSE, /api/v1/live), and on every change fetches the worklist (/api/v1/results?order=worklist) -- and stamps
when each result id first appears. Latency = that stamp - the device's publish time (same clock). Also printed:
publish -> row committed (from the database's received_at), to separate intake from the live-update path.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from cloud_bench_support import PostgresServer, load, new_database, pct, templates

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from cloud_dashboard.testing import result_messages, run_stack  # noqa: E402
from mosquitto_broker import MosquittoBroker  # noqa: E402


def watch(url: str, token: str, seen: dict[str, float], stop: threading.Event) -> None:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=h, timeout=30) as c:
        with c.stream("GET", "/api/v1/live") as s:
            for line in s.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("data:"):
                    for r in c.get("/api/v1/results?order=worklist&limit=500").json()["results"]:
                        seen.setdefault(r["result_id"], time.time())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=120)
    ap.add_argument("--period", type=float, default=0.5)
    ap.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmpl = templates()
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        work = Path(tmp)
        pg = PostgresServer(work).start() if a.db == "postgresql" else None
        try:
            url = new_database(a.db, work, pg) if pg else ""
            with MosquittoBroker(work / "b") as broker, run_stack(work / "st", broker.port, url) as st:
                seen: dict[str, float] = {}
                stop = threading.Event()
                threading.Thread(target=watch, args=(st.url, st.token, seen, stop), daemon=True).start()
                time.sleep(1.0)
                dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="amb-lat", protocol=mqtt.MQTTv5)
                dev.connect("127.0.0.1", broker.port)
                dev.loop_start()
                sent: dict[str, float] = {}
                for i in range(a.results):
                    tri, strip = result_messages(*tmpl[i % 2], device_id="amb-lat", seq=2 * i)
                    p1, p2 = json.dumps(tri), json.dumps(strip)
                    t = time.time()
                    dev.publish("ecg/amb-lat/triage", p1, qos=1)
                    dev.publish("ecg/amb-lat/strip", p2, qos=1)
                    sent[tri["result"]["id"]] = t
                    time.sleep(max(0.0, a.period - (time.time() - t)))
                deadline = time.monotonic() + 60
                while len([r for r in sent if r in seen]) < len(sent) and time.monotonic() < deadline:
                    time.sleep(0.2)
                stop.set()
                status, body = st.api("GET", "/api/v1/results?limit=1000&order=recent")
                committed = [datetime.fromisoformat(r["received_at"].replace("Z", "+00:00")).timestamp() - sent[r["result_id"]]
                             for r in body["results"] if r["result_id"] in sent]
                dev.loop_stop()
        finally:
            if pg:
                pg.stop()
    lat = [seen[r] - sent[r] for r in sent if r in seen]
    doc = {"benchmark": "cloud_latency", "db": a.db, "results": len(sent), "seen": len(lat),
           "visible_median_s": round(pct(lat, 50), 3), "visible_p99_s": round(pct(lat, 99), 3),
           "visible_max_s": round(max(lat), 3), "committed_median_s": round(pct(committed, 50), 3),
           "committed_p99_s": round(pct(committed, 99), 3), "period_s": a.period, "load": load()}
    if a.json:
        print(json.dumps(doc))
    else:
        print(f"publish -> visible in worklist ({a.db}, {len(lat)}/{len(sent)} results, one every {a.period} s): "
              f"median {doc['visible_median_s']} s, p99 {doc['visible_p99_s']} s, max {doc['visible_max_s']} s; "
              f"publish -> committed: median {doc['committed_median_s']} s, p99 {doc['committed_p99_s']} s; load {doc['load']}")
    return 0 if len(lat) == len(sent) else 1


if __name__ == "__main__":
    raise SystemExit(main())
