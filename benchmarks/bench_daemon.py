"""Benchmark the real daemon process streaming a real record at 500 Hz in real time.

Measures (and prints):
- startup to ready: from spawning `python -m edge_app.cli run` to its sd_notify READY=1 datagram (this
  script plays systemd's notify socket), i.e. interpreter start + imports + model load/verify + warm-up;
- latency: for every result, from the moment the daemon's serial reader received the block holding the
  window's last sample to the moment the result was stored (JSON + WFDB strip fsynced), audited and
  handed to the sinks (the daemon's own monotonic clock; median, p99, max);
- CPU share of the daemon process (user + sys CPU seconds / wall seconds, 100 % = one core) and its RSS
  (max and at the end), sampled once a second with psutil, while streaming;

The front end is the pty simulator (firmware_bridge.simulator) at speed 1.0 (real time) in this process.

    python benchmarks/bench_daemon.py [--duration 60] [--stride 5] [--record edge_app/data/records/00181_hr]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_app.control_socket import call  # noqa: E402
from firmware_bridge.simulator import FrontEndSimulator  # noqa: E402


def _time_startup(cfg: Path, tmp: Path, i: int) -> float:
    """One more cold start against the same state dir (the simulator is stopped: the daemon must get ready
    without a front end too)."""
    path = tmp / f"notify{i}.sock"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(path))
    ns.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=str(path))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)], cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while "READY=1" not in ns.recv(4096).decode().split("\n"):
        pass
    t = time.monotonic() - t0
    proc.terminate()
    proc.wait(30)
    ns.close()
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of real-time streaming")
    ap.add_argument("--stride", type=float, default=5.0)
    ap.add_argument("--record", default=str(ROOT / "edge_app" / "data" / "records" / "00181_hr"))
    ap.add_argument("--startups", type=int, default=3, help="extra cold starts to time (spawn -> READY=1 -> SIGTERM)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    sim = FrontEndSimulator(args.record, fs=500, speed=1.0, loop=True, link_path=str(tmp / "frontend"))
    sim.start()
    cfg = tmp / "config.toml"
    cfg.write_text(f'[device]\nid = "bench"\n[frontend]\nport = "{tmp / "frontend"}"\n'
                   f'[windows]\nstride_s = {args.stride}\n[storage]\nstate_dir = "{tmp / "state"}"\n'
                   '[logging]\nlevel = "WARNING"\n')
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(str(tmp / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify.sock"))
    log = open(tmp / "daemon.log", "wb")
    t_spawn = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)], cwd=str(ROOT),
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    nsock.settimeout(60)
    while True:
        msg = nsock.recv(4096).decode()
        if "READY=1" in msg.split("\n"):
            t_ready = time.monotonic() - t_spawn
            break
    nsock.setblocking(False)

    def drain() -> None:            # behave like systemd: read every notification
        try:
            while True:
                nsock.recv(4096)
        except BlockingIOError:
            pass
    p = psutil.Process(proc.pid)
    time.sleep(1.0)
    cpu0 = p.cpu_times()
    w0 = time.monotonic()
    rss = []
    while time.monotonic() - w0 < args.duration:
        rss.append(p.memory_info().rss)
        drain()
        time.sleep(1.0)
    cpu1 = p.cpu_times()
    wall = time.monotonic() - w0
    status = call(tmp / "state" / "control.sock", "status")["result"]
    results = call(tmp / "state" / "control.sock", "results/latest", n=100)["result"]
    proc.terminate()
    proc.wait(30)
    sim.stop()
    starts = [t_ready] + [_time_startup(cfg, tmp, i) for i in range(args.startups)]
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall
    lat = sorted(status["latency_all_ms"])
    analysis = sorted(r["timings_ms"]["analysis_ms"] for r in results)
    model = sorted(r["timings_ms"].get("model_ms", 0.0) for r in results if r["probabilities"])

    def pct(v: list[float], q: float) -> float:
        return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")
    out = {
        "machine": f"{platform.machine()} {psutil.cpu_count()} cpu, load {os.getloadavg()[0]:.2f}, python {platform.python_version()}",
        "record": Path(args.record).name, "fs_hz": 500, "speed": 1.0, "stride_s": args.stride,
        "streamed_s": round(wall, 1), "results": len(lat),
        "startup_to_ready_s": round(t_ready, 3),
        "startup_to_ready_s_all": [round(v, 2) for v in starts],
        "startup_to_ready_s_median": round(statistics.median(starts), 2), "daemon_internal_ready_s": status["ready_s"],
        "latency_last_sample_to_stored_ms": {"median": round(statistics.median(lat), 1) if lat else None,
                                             "p99": round(pct(lat, 0.99), 1), "max": round(lat[-1], 1) if lat else None},
        "analysis_ms_median": round(statistics.median(analysis), 1) if analysis else None,
        "model_ms_median": round(statistics.median(model), 2) if model else None,
        "cpu_share_one_core_pct": round(100 * cpu, 1),
        "rss_mb": {"max": round(max(rss) / 2 ** 20, 1), "end": round(rss[-1] / 2 ** 20, 1)},
        "counters": status["counters"],
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"ecg-edge daemon benchmark ({out['machine']})")
        print(f"  record {out['record']} at 500 Hz, real time, {out['streamed_s']} s, stride {args.stride} s, "
              f"{out['results']} results")
        print(f"  startup to READY=1: median {out['startup_to_ready_s_median']} s over {len(starts)} starts "
              f"{out['startup_to_ready_s_all']} (daemon-internal {out['daemon_internal_ready_s']:.2f} s, rest = imports)")
        L = out["latency_last_sample_to_stored_ms"]
        print(f"  last sample -> result stored: median {L['median']} ms, p99 {L['p99']} ms, max {L['max']} ms "
              f"(analysis median {out['analysis_ms_median']} ms, model {out['model_ms_median']} ms)")
        print(f"  CPU {out['cpu_share_one_core_pct']} % of one core; RSS max {out['rss_mb']['max']} MB, "
              f"end {out['rss_mb']['end']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
