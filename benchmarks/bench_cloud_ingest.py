"""Station intake throughput: device messages (results + their 12-lead strips) stored per second, on SQLite and
on PostgreSQL, with 1, 2 and 4 ingest workers (shared subscription), and through a regional broker bridged to
the central one.

    python benchmarks/bench_cloud_ingest.py [--results 500] [--workers 1,2,4] [--db sqlite,postgresql] [--bridge] [--json]

Method: a fresh database and broker per configuration; N `ecg-cloud ingest` worker processes subscribed; one
publisher (QoS 1, 100 in flight) sends --results real result messages and their strips (PTB-XL 00270 / 00387 through
the device's own chain and strip codec, ~3 kB + ~25 kB) over 20 device ids as fast as the broker takes them. Rate
= messages stored / (last row committed - first publish). Exactly-once is checked (rows == unique msg_ids).
Everything (broker, workers, PostgreSQL, publisher) shares this machine's CPUs: read the rates as a floor; the
workers' CPU time per stored message (psutil, user+sys, start-up included) is the figure that survives a busy box.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from cloud_bench_support import REPO, PostgresServer, Workers, counts, load, make_messages, new_database, templates

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402

from mosquitto_broker import MosquittoBroker  # noqa: E402


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.monotonic()
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    return t0


def run_one(work: Path, kind: str, n_workers: int, msgs: list, n_results: int, pg, bridge: bool) -> dict:  # noqa: ANN001
    url = new_database(kind, work, pg)
    central = MosquittoBroker(work / f"c-{kind}-{n_workers}").start()
    regional = None
    if bridge:
        from test_cloud_bridge import bridge_lines
        regional = MosquittoBroker(work / f"r-{kind}-{n_workers}", extra=bridge_lines(central.port, "bench-bridge")).start()
        time.sleep(1.0)
    workers = Workers(work, central.port, url, n_workers)
    try:
        t0 = publish_all((regional or central).port, msgs)
        t_pub = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while True:
            c = counts(url)
            if c["messages"] >= len(msgs) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        t = time.monotonic() - t0
        time.sleep(1.0)
        c = counts(url)
        cpu = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in workers.procs if p.poll() is None)
    finally:
        workers.stop()
        if regional:
            regional.stop()
        central.stop()
    ok = c["messages"] == len(msgs) and c["results"] == n_results == c["distinct_results"] and c["strips"] == n_results
    return {"db": kind, "workers": n_workers, "bridge": bridge, "messages": len(msgs), "seconds": round(t, 2),
            "publish_seconds": round(t_pub, 2), "msgs_per_s": round(len(msgs) / t, 1),
            "results_per_s": round(n_results / t, 1), "exactly_once": ok,
            # CPU the workers used per stored message (incl. start-up): robust to a busy machine, unlike msg/s.
            "worker_cpu_ms_per_msg": round(cpu / len(msgs) * 1000, 2), "quarantined": c["quarantine"], "load": load()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=500)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--bridge", action="store_true", help="also: SQLite, 1 worker, devices on a bridged regional broker")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmpl = templates()
    msgs = make_messages(a.results, [f"amb-{i:02d}" for i in range(20)], tmpl)
    mb = sum(len(p) for _, p in msgs) / 1e6
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        work = Path(tmp)
        kinds = a.db.split(",")
        pg = PostgresServer(work).start() if "postgresql" in kinds else None
        try:
            for kind in kinds:
                for n in [int(x) for x in a.workers.split(",")]:
                    rows.append(run_one(work, kind, n, msgs, a.results, pg, False))
                    if not a.json:
                        r = rows[-1]
                        print(f"{kind:10} workers={n}: {r['msgs_per_s']:7.1f} msg/s ({r['results_per_s']:.1f} results+strips/s) "
                              f"{r['messages']} msgs in {r['seconds']} s, worker CPU {r['worker_cpu_ms_per_msg']} ms/msg, "
                              f"exactly once: {r['exactly_once']}, load {r['load']}",
                              flush=True)
            if a.bridge:
                rows.append(run_one(work, "sqlite", 1, msgs, a.results, None, True))
                if not a.json:
                    r = rows[-1]
                    print(f"sqlite via bridge workers=1: {r['msgs_per_s']:7.1f} msg/s, exactly once: {r['exactly_once']}", flush=True)
        finally:
            if pg:
                pg.stop()
    doc = {"benchmark": "cloud_ingest", "payload_mb": round(mb, 1), "rows": rows}
    print(json.dumps(doc) if a.json else f"({len(msgs)} messages, {mb:.1f} MB per run; repo {REPO.name})")
    return 0 if all(r["exactly_once"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
