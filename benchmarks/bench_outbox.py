"""Outbox figures: results/s persisted durably, and messages/s drained to a real mosquitto after an outage.

    python benchmarks/bench_outbox.py [--results 2000] [--drain 5000] [--dir /var/tmp] [--json]

1. Durable persist: Uplink.publish_result() with a realistic result payload (~1.5 KB JSON, the size of a
   daemon result without the raw strip) while the link is down; every call returns only after SQLite
   (WAL, synchronous=FULL) has fsync'd. Reports calls/s and per-call latency percentiles.
2. Drain after outage: N results queued while the broker is down (mixed priorities); then a real
   /usr/sbin/mosquitto is started on a free loopback port; time from CONNACK to the last of the N results
   received at a QoS 1 subscriber, and rows deleted from the outbox. Checks order (critical first) and
   duplicates. Loopback only; stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from edge_app.uplink.outbox import PRIORITY_RANK  # noqa: E402
from edge_app.uplink.service import Uplink  # noqa: E402
from edge_app.uplink.settings import MqttConfig  # noqa: E402
from mosquitto_broker import MosquittoBroker  # noqa: E402
from mqtt_helpers import Collector  # noqa: E402

PRIOS = ["none", "low", "low", "medium", "high", "low", "none"]


def fake_result(i: int) -> dict:
    """Shape and size of a daemon result (probabilities, quality, measurements, explanation summary)."""
    return {"id": f"r{i:08d}", "window": {"start_s": i * 5.0, "end_s": i * 5.0 + 10.0},
            "level": "routine", "probabilities": {c: 0.1 + 0.01 * (i % 7) for c in ("NORM", "MI", "STTC", "CD", "HYP")},
            "quality": {"verdict": "good", "leads": {l: "ok" for l in ("I", "II", "III", "aVR", "aVL", "aVF",
                                                                      "V1", "V2", "V3", "V4", "V5", "V6")}},
            "measurements": {"hr_bpm": 72, "pr_ms": 160, "qrs_ms": 92, "qt_ms": 380, "qtc_ms": 410},
            "explanation": {"MI": {"top_segments": [[1.2, 1.5, "V2"], [3.4, 3.7, "V3"]], "note": "x" * 600}},
            "model": {"version": "0.1.0", "sha256": "ab" * 32}}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def bench_persist(workdir: Path, n: int) -> dict:
    cfg = MqttConfig.from_dict({"enabled": True, "port": 9, "reconnect_min_s": 30, "reconnect_max_s": 60})
    up = Uplink(cfg, "bench-persist", workdir / "persist.sqlite")  # never started: pure durable enqueue
    size = len(json.dumps(fake_result(0)))
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        up.publish_result(fake_result(i), PRIOS[i % len(PRIOS)])
        lat.append(time.perf_counter() - t)
    dt = time.perf_counter() - t0
    depth = up.outbox.depth()
    up.outbox.close()
    return {"results": n, "payload_bytes": size, "seconds": round(dt, 3), "results_per_s": round(n / dt, 1),
            "latency_ms_p50": round(1000 * statistics.median(lat), 2), "latency_ms_p99": round(1000 * pct(lat, 99), 2),
            "latency_ms_max": round(1000 * max(lat), 2), "depth_after": depth}


def bench_drain(workdir: Path, n: int, inflight: int = 20) -> dict:
    broker = MosquittoBroker(workdir, persistence=False)
    cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "reconnect_min_s": 0.1,
                                "reconnect_max_s": 0.2, "telemetry_interval_s": 3600, "max_inflight": inflight})
    up = Uplink(cfg, "bench-drain", workdir / "drain.sqlite")
    ids = [up.publish_result(fake_result(i), PRIOS[i % len(PRIOS)]) for i in range(n)]
    broker.start()
    col = Collector(broker.port, "ecg/bench-drain/triage")
    t0 = time.perf_counter()
    up.start()
    assert up.wait_connected(10), "device could not connect"
    t_conn = time.perf_counter()
    deadline = time.monotonic() + 300
    while len(col.raw("triage")) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    t_recv = time.perf_counter()
    up.wait_drained(30)
    t_drained = time.perf_counter()
    got = col.on("triage")
    up.stop()
    col.close()
    broker.stop()
    c = Counter(m["msg_id"] for m in got)
    ranks = [PRIORITY_RANK[m["priority"]] for m in got]
    return {"max_inflight": inflight, "messages": n, "received": len(got), "lost": len(set(ids) - set(c)),
            "duplicates": sum(v - 1 for v in c.values()), "critical_first": ranks == sorted(ranks),
            "connect_s": round(t_conn - t0, 3), "seconds_to_last_received": round(t_recv - t_conn, 3),
            "messages_per_s": round(n / (t_recv - t_conn), 1),
            "seconds_until_outbox_empty": round(t_drained - t_conn, 3),
            "outbox_rows_deleted_per_s": round(n / (t_drained - t_conn), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=int, default=2000)
    ap.add_argument("--drain", type=int, default=5000)
    ap.add_argument("--dir", default="/var/tmp", help="where the outbox files go (use the device's state disk)")
    ap.add_argument("--inflight", type=int, default=20, help="mqtt.max_inflight for the drain")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench-outbox-") as d:
        wd = Path(d)
        out = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "dir": a.dir},
               "persist": bench_persist(wd, a.results), "drain": bench_drain(wd, a.drain, a.inflight)}
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    p, dr = out["persist"], out["drain"]
    print(f"machine: {out['machine']['cpus']} CPUs, load {out['machine']['load_avg_1m']} (shared), outbox in {a.dir}")
    print(f"durable persist: {p['results_per_s']} results/s ({p['results']} x {p['payload_bytes']} B JSON, "
          f"fsync per result; latency p50 {p['latency_ms_p50']} ms, p99 {p['latency_ms_p99']} ms, "
          f"max {p['latency_ms_max']} ms)")
    print(f"drain after outage: {dr['messages_per_s']} msg/s to mosquitto (max_inflight {dr['max_inflight']}, "
          f"{dr['messages']} queued, "
          f"{dr['received']} received in {dr['seconds_to_last_received']} s after connect; lost {dr['lost']}, "
          f"duplicates {dr['duplicates']}, critical first: {dr['critical_first']}; outbox empty after "
          f"{dr['seconds_until_outbox_empty']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
