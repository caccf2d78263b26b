"""A fleet reconnecting after an outage: D simulated devices each flush a backlog of B results (+ their strips)
at once to the station; time to drain, and nothing lost or stored twice.

    python benchmarks/bench_cloud_backlog.py [--devices 1000] [--backlog 2] [--workers 2] [--db sqlite|postgresql] [--json]

Method: the station (`ecg-cloud ingest` x --workers on a fresh database) is up; the devices were "offline" and come
back together: each is its own MQTT 5 connection (simulators in 4 processes, one select loop each), connects and
publishes its whole backlog at QoS 1 (20 in flight per device, like the real outbox), and re-sends its first
message once (a PUBACK lost in the outage: at-least-once). Drain time = first connect -> last row committed.
Checked: stored messages == unique msg_ids published, results == devices x backlog, no quarantine.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloud_bench_support import PostgresServer, Workers, counts, load, make_messages, new_database, templates

from mosquitto_broker import MosquittoBroker  # noqa: E402


def simulate(port: int, msgs_file: str, go_file: str) -> None:
    """Devices of one simulator process: wait for go_file, connect all, publish every backlog, report."""
    import paho.mqtt.client as mqtt
    by_dev: dict[str, list[tuple[str, bytes]]] = {}
    with open(msgs_file, "rb") as f:
        for line in f:
            topic, payload = line.split(b" ", 1)
            by_dev.setdefault(topic.decode().split("/")[1], []).append((topic.decode(), payload.rstrip(b"\n")))
    while not os.path.exists(go_file):
        time.sleep(0.01)
    sel = selectors.DefaultSelector()
    pending = {"n": 0}
    clients = []
    for dev, msgs in by_dev.items():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bl-{dev}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(20)
        c.on_publish = lambda *a: pending.__setitem__("n", pending["n"] - 1)
        c.connect("127.0.0.1", port, keepalive=120)
        c.socket().setblocking(False)
        sel.register(c.socket(), selectors.EVENT_READ, c)
        for topic, payload in msgs + msgs[:1]:                     # the first one twice: a lost PUBACK
            c.publish(topic, payload, qos=1)
            pending["n"] += 1
        clients.append(c)
        for key, _ in sel.select(0):
            key.data.loop_read()
    t_last = time.monotonic()
    while pending["n"] > 0:
        for key, _ in sel.select(0.05):
            key.data.loop_read()
        for c in clients:
            if c.want_write():
                c.loop_write()
        if time.monotonic() - t_last > 1:
            t_last = time.monotonic()
            for c in clients:
                c.loop_misc()
    for c in clients:
        c.disconnect()
    print(json.dumps({"devices": len(clients), "published": sum(len(m) + 1 for m in by_dev.values())}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=2, help="results (each + its strip) queued per device")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="sqlite", choices=("sqlite", "postgresql"))
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--simulate", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.simulate:
        simulate(int(a.simulate[0]), a.simulate[1], a.simulate[2])
        return 0
    devices = [f"amb-{i:05d}" for i in range(a.devices)]
    msgs = make_messages(a.devices * a.backlog, devices, templates())
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        work = Path(tmp)
        pg = PostgresServer(work).start() if a.db == "postgresql" else None
        try:
            url = new_database(a.db, work, pg)
            broker = MosquittoBroker(work / "broker").start()
            workers = Workers(work, broker.port, url, a.workers)
            files = [work / f"sim{i}.txt" for i in range(a.procs)]
            handles = [open(f, "wb") for f in files]
            for topic, payload in msgs:
                dev_index = int(topic.split("/")[1].split("-")[1])
                handles[dev_index % a.procs].write(topic.encode() + b" " + payload + b"\n")
            for h in handles:
                h.close()
            go = work / "go"
            sims = [subprocess.Popen([sys.executable, __file__, "--simulate", str(broker.port), str(f), str(go)],
                                     stdout=subprocess.PIPE, text=True) for f in files]
            time.sleep(3.0)                                        # simulators have parsed their backlog
            t0 = time.monotonic()
            go.write_text("go")
            deadline = t0 + 1800
            while counts(url)["messages"] < len(msgs) and time.monotonic() < deadline:
                time.sleep(0.2)
            t_drain = time.monotonic() - t0
            reports = [json.loads(s.communicate(timeout=120)[0].strip().splitlines()[-1]) for s in sims]
            time.sleep(2.0)
            c = counts(url)
            workers.stop()
            broker.stop()
        finally:
            if pg:
                pg.stop()
    ok = (c["messages"] == len(msgs) and c["results"] == c["distinct_results"] == a.devices * a.backlog
          and c["strips"] == a.devices * a.backlog and c["quarantine"] == 0)
    doc = {"benchmark": "cloud_backlog", "db": a.db, "workers": a.workers, "devices": a.devices, "backlog": a.backlog,
           "published": sum(r["published"] for r in reports), "unique_messages": len(msgs), "stored": c,
           "drain_s": round(t_drain, 1), "msgs_per_s": round(len(msgs) / t_drain, 1), "lost_or_duplicated": not ok,
           "load": load()}
    if a.json:
        print(json.dumps(doc))
    else:
        print(f"{a.devices} devices x {a.backlog} results (+strips) = {len(msgs)} unique messages "
              f"({doc['published']} published incl. repeats) on {a.db}, {a.workers} workers: drained in "
              f"{doc['drain_s']} s ({doc['msgs_per_s']} msg/s); stored {c['messages']} messages, {c['results']} results, "
              f"{c['strips']} strips, {c['quarantine']} quarantined -> {'nothing lost or duplicated' if ok else 'MISMATCH'}; "
              f"load {doc['load']}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
