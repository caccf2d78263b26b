"""How many light devices one mosquitto on this machine carries while the admin CLI stays responsive.

    python benchmarks/bench_fleet.py [--steps 100,250,500,1000,2000] [--step-seconds 20] [--json]

Each simulated device is a real MQTT 5 client (own TCP connection, Last Will, retained availability and
birth) publishing a ~1 KB triage result every 5 s at QoS 1 (the real rate of a 10 s window with a 5 s
stride) and retained telemetry every 30 s. Simulators run in separate processes (one select loop each, no
thread per device). Devices are added step by step; in each step we measure, for --step-seconds:
  - delivery: triage messages received by a QoS 1 fleet subscriber (ecg/+/triage) vs the expected rate;
  - admin responsiveness: round-trip of `status` commands from an ecg-fleet client (separate process) to
    a real Uplink device with a DeviceControl, every 0.5 s (p50/p95/max), and how long `devices` takes to list
    the whole fleet from retained topics;
  - broker CPU and memory.
A step "carries" the fleet when >= 99 % of expected results arrive and admin p95 < 1 s. (The per-step
received rate can exceed 100 % right after a step: simulators that lagged while connecting catch up.
Exact accounting is the final line: every result published vs received over the whole run.) Stops at the first
failing step, at the last step, or after --max-seconds. Loopback only; everything is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

RESULT_PERIOD_S = 5.0
TELEMETRY_PERIOD_S = 30.0


# ---- simulator process ------------------------------------------------------------------------------------
def simulate(port: int, first: int, count: int, stop_file: str) -> None:
    """Run `count` devices in one select loop until stop_file exists; print counts as JSON lines."""
    import paho.mqtt.client as mqtt
    payload_pad = "x" * 700
    sel = selectors.DefaultSelector()
    clients = []
    t0 = time.monotonic()
    for i in range(first, first + count):
        dev = f"sim-{i:05d}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv5)
        c.will_set(f"ecg/{dev}/availability", b"offline", qos=1, retain=True)
        c.connect("127.0.0.1", port, keepalive=60)
        c.socket().setblocking(False)
        sel.register(c.socket(), selectors.EVENT_READ, c)
        c.publish(f"ecg/{dev}/availability", b"online", qos=1, retain=True)
        c.publish(f"ecg/{dev}/birth", json.dumps({"schema": "ecg.birth/1", "device_id": dev, "software_version": "sim",
                                                  "capabilities": []}), qos=1, retain=True)
        clients.append({"c": c, "dev": dev, "next_result": time.monotonic() + random.uniform(0, RESULT_PERIOD_S),
                        "next_tel": time.monotonic() + random.uniform(0, TELEMETRY_PERIOD_S), "n": 0})
        for key, _ in sel.select(0):
            key.data.loop_read()
    print(json.dumps({"connected": count, "seconds": round(time.monotonic() - t0, 2)}), flush=True)
    published = 0
    last_misc = time.monotonic()
    while not os.path.exists(stop_file):
        for key, _ in sel.select(0.05):
            key.data.loop_read()
        now = time.monotonic()
        for d in clients:
            if now >= d["next_result"]:
                d["next_result"] += RESULT_PERIOD_S
                d["n"] += 1
                body = {"schema": "ecg.triage/1", "msg_id": f"{d['dev']}-{d['n']}", "device_id": d["dev"],
                        "priority": "low", "seq": d["n"], "result": {"level": "routine", "pad": payload_pad}}
                d["c"].publish(f"ecg/{d['dev']}/triage", json.dumps(body), qos=1)
                published += 1
            if now >= d["next_tel"]:
                d["next_tel"] += TELEMETRY_PERIOD_S
                d["c"].publish(f"ecg/{d['dev']}/telemetry", json.dumps({"device_id": d["dev"], "cpu_percent": 5}),
                               qos=0, retain=True)
            if d["c"].want_write():
                d["c"].loop_write()
        if now - last_misc > 2:
            last_misc = now
            for d in clients:
                d["c"].loop_misc()
    for d in clients:
        d["c"].disconnect()
    print(json.dumps({"published": published}), flush=True)


# ---- admin probe process ----------------------------------------------------------------------------------
def admin_probe(port: int, target: str, stop_file: str, period: float) -> None:
    from cloud_dashboard.fleet_cli import FleetClient, FleetError
    with FleetClient(port=port, admin="bench") as fleet:
        while not os.path.exists(stop_file):
            t = time.perf_counter()
            try:
                ok = fleet.command(target, "status", timeout=5).get("ok")
                print(json.dumps({"t": time.time(), "rtt": time.perf_counter() - t, "ok": ok}), flush=True)
            except FleetError:
                print(json.dumps({"t": time.time(), "rtt": None, "ok": False}), flush=True)
            time.sleep(period)


# ---- orchestration ----------------------------------------------------------------------------------------
def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="100,1000,4000,8000,12000")
    ap.add_argument("--step-seconds", type=float, default=15.0)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--per-sim", type=int, default=1000, help="devices per simulator process")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_sim", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--_admin", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._sim:
        simulate(int(a._sim[0]), int(a._sim[1]), int(a._sim[2]), a._sim[3])
        return 0
    if a._admin:
        admin_probe(int(a._admin[0]), a._admin[1], a._admin[2], 0.5)
        return 0

    import psutil
    from cloud_dashboard.fleet_cli import FleetClient
    from edge_app.uplink.service import Uplink
    from edge_app.uplink.settings import MqttConfig
    from mosquitto_broker import MosquittoBroker
    from device_helpers import real_device
    from mqtt_helpers import Collector

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    steps = [int(s) for s in a.steps.split(",")]
    fd_room = hard - 500  # the broker needs one descriptor per device (it inherits this limit)
    if any(n > fd_room for n in steps):
        print(f"note: skipping steps above {fd_room} devices (open-file limit {hard})", file=sys.stderr)
        steps = [n for n in steps if n <= fd_room]
    t_start = time.monotonic()
    rows = []
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as d:
        wd = Path(d)
        stop_file = str(wd / "STOP")
        broker = MosquittoBroker(wd, extra=["max_connections -1"]).start()
        bproc = psutil.Process(broker.proc.pid)
        target = Uplink(MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 30}),
                        "fleet-admin-target", wd / "target.sqlite",
                        control=real_device(wd, "fleet-admin-target").operations)
        target.start()
        assert target.wait_connected(10)
        col = Collector(broker.port, "ecg/+/triage")
        admin = subprocess.Popen([sys.executable, __file__, "--_admin", str(broker.port), "fleet-admin-target",
                                  stop_file], stdout=subprocess.PIPE, text=True)
        probes: list[dict] = []
        threading.Thread(target=lambda: [probes.append(json.loads(l)) for l in admin.stdout], daemon=True).start()
        sim_out: list[dict] = []
        running = 0
        try:
            for total in steps:
                if time.monotonic() - t_start > a.max_seconds:
                    break
                t_conn = time.monotonic()
                while running < total:
                    n = min(a.per_sim, total - running)
                    p = subprocess.Popen([sys.executable, __file__, "--_sim", str(broker.port), str(running), str(n),
                                          stop_file], stdout=subprocess.PIPE, text=True)
                    line = p.stdout.readline()
                    if not line:
                        raise RuntimeError("simulator died while connecting")
                    procs.append(p)
                    running += n
                connect_s = time.monotonic() - t_conn
                time.sleep(2 * RESULT_PERIOD_S / 5)  # let new devices reach their steady rate
                # devices listing through the admin client (retained state of the whole fleet)
                t = time.perf_counter()
                with FleetClient(port=broker.port) as fleet:
                    seen = fleet.devices(wait_s=0)
                    deadline = time.monotonic() + 30
                    while len(seen) < total + 1 and time.monotonic() < deadline:
                        seen = fleet.devices(wait_s=0.25)
                listing_s = time.perf_counter() - t
                bproc.cpu_percent(None)
                n0, t0 = len(col.messages), time.monotonic()
                p0 = len(probes)
                time.sleep(a.step_seconds)
                n1, t1 = len(col.messages), time.monotonic()
                cpu = bproc.cpu_percent(None)
                rss = bproc.memory_info().rss / 2**20
                rtts = [p["rtt"] for p in probes[p0:] if p["rtt"] is not None]
                failed = sum(1 for p in probes[p0:] if not p["ok"])
                expected = total / RESULT_PERIOD_S * (t1 - t0)
                row = {"devices": total, "connect_s": round(connect_s, 2), "devices_listing_s": round(listing_s, 2),
                       "devices_listed": len(seen),
                       "results_per_s_expected": round(total / RESULT_PERIOD_S, 1),
                       "results_per_s_received": round((n1 - n0) / (t1 - t0), 1),
                       "delivered_ratio": round((n1 - n0) / expected, 4) if expected else None,
                       "admin_rtt_ms_p50": round(1000 * statistics.median(rtts), 1) if rtts else None,
                       "admin_rtt_ms_p95": round(1000 * pct(rtts, 95), 1) if rtts else None,
                       "admin_rtt_ms_max": round(1000 * max(rtts), 1) if rtts else None,
                       "admin_commands": len(rtts), "admin_failed": failed,
                       "broker_cpu_percent": round(cpu, 1), "broker_rss_mb": round(rss, 1),
                       "load_avg_1m": round(os.getloadavg()[0], 2)}
                row["carried"] = bool(row["delivered_ratio"] and row["delivered_ratio"] >= 0.99 and rtts
                                      and row["admin_rtt_ms_p95"] < 1000 and failed == 0)
                rows.append(row)
                if not a.json:
                    print(f"{total:5d} devices: {row['results_per_s_received']:7.1f}/{row['results_per_s_expected']:.1f} "
                          f"results/s received ({100 * (row['delivered_ratio'] or 0):.1f} %), admin status rtt "
                          f"p50 {row['admin_rtt_ms_p50']} ms p95 {row['admin_rtt_ms_p95']} ms max {row['admin_rtt_ms_max']} ms "
                          f"({failed} failed), devices listing {row['devices_listing_s']} s for {len(seen)}, broker "
                          f"CPU {row['broker_cpu_percent']} % RSS {row['broker_rss_mb']} MB, connect {row['connect_s']} s, "
                          f"load {row['load_avg_1m']} -> {'OK' if row['carried'] else 'NOT CARRIED'}", flush=True)
                if not row["carried"]:
                    break
        finally:
            Path(stop_file).write_text("stop")
            for p in procs:
                try:
                    out, _ = p.communicate(timeout=30)
                    for line in out.splitlines():
                        sim_out.append(json.loads(line))
                except subprocess.TimeoutExpired:
                    p.kill()
            try:
                admin.wait(10)
            except subprocess.TimeoutExpired:
                admin.kill()
            time.sleep(1.0)
            received_total = len(col.messages)
            col.close()
            target.stop()
            broker.stop()
    carried = [r["devices"] for r in rows if r["carried"]]
    summary = {"steps": rows, "max_devices_carried": max(carried) if carried else 0,
               "published_total": sum(o.get("published", 0) for o in sim_out),
               "received_total": received_total,
               "cpus": os.cpu_count()}
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"one mosquitto on this {os.cpu_count()}-CPU machine carried {summary['max_devices_carried']} simulated "
              f"devices (largest step tested that passed; simulators share the same CPUs); over the whole run "
              f"{summary['received_total']} of {summary['published_total']} simulated results reached the fleet "
              f"subscriber")
    return 0


if __name__ == "__main__":
    sys.exit(main())
