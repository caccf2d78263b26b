"""`ecg-cloud demo`: the whole chain on one machine -- a local Mosquitto, the station on SQLite, and N simulated
ambulances, each the REAL daemon (`ecg-edge run`, real model) reading the front-end simulator that replays a
different built-in PTB-XL record in real time. Prints the dashboard URL and the demo logins (with --json, the
first stdout line is one JSON object with at least `url` and `token`, an API token of the demo viewer).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .testing import free_port, run_stack

RECORDS_DIR = Path(__file__).resolve().parent.parent / "edge_app" / "data" / "records"


def builtin_records() -> list[dict[str, Any]]:
    """The built-in PTB-XL records (CC BY 4.0) with their patients' age and sex."""
    meta = json.loads((RECORDS_DIR / "records.json").read_text())["records"]
    return [m for m in meta if (RECORDS_DIR / f"{m['record_500hz']}.hea").exists()]


class Mosquitto:
    """A private broker on a free loopback port (anonymous: loopback only, demo only)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "set_tcp_nodelay true",
                 "max_inflight_messages 100", "max_queued_messages 100000", "message_size_limit 0",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = open(workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        import socket
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start: " + (workdir / "mosquitto.log").read_text()[-1000:])
                time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc)


def _stop(p: subprocess.Popen, timeout: float = 10) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _simulator_module() -> str:
    """The front-end simulator's command-line module (`ecg-frontend-sim`): firmware_bridge.simulator_cli where the
    CLI has its own module, else firmware_bridge.simulator."""
    import importlib.util
    return "firmware_bridge.simulator_cli" if importlib.util.find_spec("firmware_bridge.simulator_cli") \
        else "firmware_bridge.simulator"


def start_ambulance(workdir: Path, index: int, record: dict[str, Any], broker_port: int) -> dict[str, Any]:
    """Simulator (real-time replay of `record`, looping) + the real daemon, configured for the demo broker."""
    dev = f"amb-{index + 1:02d}"
    d = workdir / dev
    d.mkdir(parents=True, exist_ok=True)
    link = d / "frontend"
    sim_log = open(d / "simulator.log", "ab")
    sim = subprocess.Popen([sys.executable, "-m", _simulator_module(), str(RECORDS_DIR / record["record_500hz"]),
                            "--link", str(link), "--speed", "1", "--device-id", dev],
                           stdout=sim_log, stderr=sim_log, stdin=subprocess.DEVNULL)
    sim_log.close()
    display_port = free_port()
    age = record.get("age")
    cfg = d / "config.toml"
    cfg.write_text(f"""[device]
id = "{dev}"
[frontend]
port = "{link}"
[patient]
age = {json.dumps(age if age is not None and age <= 130 else "unknown")}
sex = "{record.get('sex') or 'unknown'}"
[storage]
state_dir = "{d / 'state'}"
[display]
enabled = true
port = {display_port}
[mqtt]
enabled = true
port = {broker_port}
reconnect_max_s = 2.0
""")
    deadline = time.monotonic() + 20
    while not link.exists():
        if sim.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator for {dev} did not start: {(d / 'simulator.log').read_text()[-1000:]}")
        time.sleep(0.05)
    log = open(d / "daemon.log", "ab")
    daemon = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)],
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    return {"device_id": dev, "record": record["record_500hz"], "superclasses": record.get("superclasses"),
            "bedside_url": f"http://127.0.0.1:{display_port}/", "procs": [daemon, sim]}


def run_demo(devices: int = 3, duration: float = 0, as_json: bool = False, port: int = 0,
             data_dir: str | None = None) -> int:
    if devices < 0 or devices > 200:
        print("ecg-cloud demo: --devices must be 0..200", file=sys.stderr)
        return 2
    work = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ecg-cloud-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    records = builtin_records()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    ambulances: list[dict[str, Any]] = []
    with ExitStack() as es:
        broker = Mosquitto(work)
        es.callback(broker.stop)
        st = es.enter_context(run_stack(work / "station", broker.port, http_port=port or None,
                                        station="Demo Receiving Station"))
        for i in range(devices):
            amb = start_ambulance(work, i, records[i % len(records)], broker.port)
            ambulances.append(amb)
            for p in amb["procs"]:
                es.callback(_stop, p)
        info = {"url": st.url, "token": st.token, "broker_port": broker.port, "data_dir": str(work),
                "users": {role: {"username": u, "password": pw} for role, (u, pw) in st.users.items()},
                "devices": [{k: v for k, v in a.items() if k != "procs"} for a in ambulances],
                "notice": "Triage aid, not a diagnosis."}
        if as_json:
            print(json.dumps(info), flush=True)
        else:
            cu, cp = st.users["clinician"]
            print(f"ECG receiving station demo (triage aid, not a diagnosis)\n"
                  f"  dashboard: {st.url}\n  login:     {cu} / {cp} (clinician); "
                  f"{st.users['viewer'][0]} / {st.users['viewer'][1]} (viewer); "
                  f"{st.users['fleet_admin'][0]} / {st.users['fleet_admin'][1]} (fleet admin)\n"
                  f"  API:       curl -H 'Authorization: Bearer {st.token}' {st.url}/api/v1/results\n"
                  f"  broker:    127.0.0.1:{broker.port}   files: {work}", flush=True)
            for a in ambulances:
                print(f"  {a['device_id']}: replaying PTB-XL {a['record']} ({', '.join(a['superclasses'] or [])}); "
                      f"bedside page {a['bedside_url']}", flush=True)
            print("  Ctrl-C to stop." if not duration else f"  running for {duration:g} s.", flush=True)
        t_end = time.monotonic() + duration if duration else None
        try:
            while not stop["now"] and (t_end is None or time.monotonic() < t_end):
                for a in ambulances:
                    for p in a["procs"]:
                        if p.poll() is not None and not a.get("reported"):
                            a["reported"] = True
                            print(f"  warning: {a['device_id']} process exited ({p.returncode}); see {work / a['device_id']}",
                                  file=sys.stderr, flush=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    if not data_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0
