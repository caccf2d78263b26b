"""End-to-end: the REAL daemon process (`python -m edge_app.cli run --config tmp.toml`) against the real
front-end simulator over a pseudo-terminal, replaying real PTB-XL records, with the real LiteRT model.

Each test starts the simulator in this process (faster than real time) and the daemon as a subprocess,
then talks to the daemon only through its public surfaces: the control socket, the result store on
disk, the audit log, sd_notify datagrams and its exit code.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_app.control_socket import call
from edge_app.results import validate_result_dict

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "edge_app" / "data" / "records"
MI_RECORD = RECORDS / "00181_hr"          # PTB-XL ecg_id 181: ASMI/ALMI (superclass MI), 500 Hz
NORM_RECORD = RECORDS / "00387_hr"        # PTB-XL ecg_id 387: NORM

pytestmark = pytest.mark.timeout(180)


def _sim(tmp: Path, record: Path, speed: float = 4.0, faults: tuple[str, ...] = ()):
    from firmware_bridge.simulator import FrontEndSimulator
    sim = FrontEndSimulator(str(record), fs=500, speed=speed, loop=True, faults=list(faults),
                            link_path=str(tmp / "frontend"))
    sim.start()
    return sim


def _config(tmp: Path, stride: float = 5.0, extra: str = "", storage: str = "") -> Path:
    p = tmp / "config.toml"
    p.write_text(f"""
[device]
id = "test-dev"
[frontend]
port = "{tmp / 'frontend'}"
[windows]
stride_s = {stride}
[storage]
state_dir = "{tmp / 'state'}"
{storage}
[logging]
level = "INFO"
{extra}
""")
    return p


class Notify:
    """A stand-in for systemd's notify socket: collects sd_notify datagrams."""

    def __init__(self, tmp: Path):
        self.path = str(tmp / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def has(self, key: str, wait: float = 5.0) -> bool:
        t_end = time.monotonic() + wait
        while True:
            if any(key in m.split("\n") for m in self.drain()):
                return True
            if time.monotonic() > t_end:
                return False
            time.sleep(0.05)


def _start_daemon(cfg: Path, tmp: Path, notify: Notify | None = None, watchdog_usec: int | None = None):
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.path
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    log = open(tmp / "daemon.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)], cwd=str(ROOT),
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    proc._log = log  # type: ignore[attr-defined]
    return proc


def _sock(tmp: Path) -> Path:
    return tmp / "state" / "control.sock"


def _wait_ready(proc, tmp: Path, timeout: float = 40.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {(tmp / 'daemon.log').read_text()[-3000:]}")
        try:
            if call(_sock(tmp), "status", timeout=2)["ok"]:
                return
        except (ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("daemon not ready: " + (tmp / "daemon.log").read_text()[-3000:])


def _results(tmp: Path, n: int = 100) -> list[dict]:
    """All results the daemon stored, oldest first (via the control socket)."""
    r = call(_sock(tmp), "results/latest", n=n)
    assert r["ok"], r
    return list(reversed(r["result"]))


def _results_from_store(tmp: Path) -> list[dict]:
    from edge_app.storage import ResultStore
    s = ResultStore(tmp / "state")
    try:
        return s.latest(1000)
    finally:
        s.close()


def _wait_results(proc, tmp: Path, pred, timeout: float = 60.0) -> list[dict]:
    t_end = time.monotonic() + timeout
    res: list[dict] = []
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {(tmp / 'daemon.log').read_text()[-3000:]}")
        res = _results(tmp)
        if pred(res):
            return res
        time.sleep(0.2)
    raise AssertionError(f"condition not met after {timeout} s; {len(res)} results: "
                         f"{[(r['window']['start_s'], r['triage_level'], r['quality']['reasons']) for r in res]}\n"
                         + (tmp / "daemon.log").read_text()[-3000:])


def _stop(proc, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("daemon did not stop within 20 s of SIGTERM")
    proc._log.close()
    return proc.returncode


def _free_port() -> int:
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_app.cli", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout)


def _thresholds() -> dict[str, float]:
    return json.loads((ROOT / "quantized_models" / "manifest.json").read_text())["thresholds"]


# -------------------------------------------------------------------------------------------------
def test_mi_record_streams_results_with_schema_high_priority_and_sd_notify(tmp_path):
    sim = _sim(tmp_path, MI_RECORD, speed=4.0)
    notify = Notify(tmp_path)
    proc = _start_daemon(_config(tmp_path), tmp_path, notify=notify, watchdog_usec=2_000_000)
    try:
        _wait_ready(proc, tmp_path)
        assert notify.has("READY=1"), notify.messages
        # Patient context through the CLI, as a crew would set it.
        r = _cli("patient", "set", "--age", "73", "--sex", "male", "--config", str(tmp_path / "config.toml"))
        assert r.returncode == 0, r.stderr
        res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= 4)
        for d in res:
            assert validate_result_dict(d) == [], d
            assert d["device_id"] == "test-dev" and d["notice"] == "Triage aid, not a diagnosis"
            assert d["window"]["end_index"] - d["window"]["start_index"] == 5000
            assert d["strip"]["format"] == "WFDB" and d["strip"]["n_samples"] == 5000
        starts = [d["window"]["start_s"] for d in res]
        assert starts[0] == 0.0 and all(b - a == pytest.approx(5.0) for a, b in zip(starts, starts[1:]))
        assert res[-1]["patient"] == {"age": 73.0, "sex": "male"}
        th = _thresholds()
        interpreted = [d for d in res if d["probabilities"] is not None]
        assert interpreted, "no window of a clean real record was interpreted"
        detected = [d for d in interpreted if d["probabilities"]["MI"] >= th["MI"]]
        assert detected, f"MI never detected on a PTB-XL MI record: {[d['probabilities'] for d in interpreted]}"
        for d in detected:
            assert d["triage_level"] == "high" and d["alarm_priority"] == "high"
            mi = [a for a in d["alarms"] if a["code"] == "suspected_mi"]
            assert mi and mi[0]["priority"] == "high" and mi[0]["kind"] == "physiological"
            f = [f for f in d["explanation"]["findings"] if f["cls"] == "MI"][0]
            assert f["leads"] and f["seconds"], f
            assert len(f["cam"]) == 50 and max(f["cam"]) == 1.0 and min(f["cam"]) >= 0.0, f["cam"]
            peak_s = (f["cam"].index(1.0) + 0.5) * 0.2                      # the strongest 0.2 s bin ...
            assert any(a - 0.5 <= peak_s <= b + 0.5 for a, b in f["seconds"]), (peak_s, f["seconds"])
        time.sleep(1.5)
        assert notify.has("WATCHDOG=1"), "watchdog never fed while samples were flowing"
        st = call(_sock(tmp_path), "status")["result"]
        assert st["frontend"]["status"] == "streaming" and st["watchdog"]["healthy"]
        # The crew acknowledges the suspected-MI alarm; the service then restarts (update, watchdog...).
        mi_alarm = [a for a in call(_sock(tmp_path), "alarms/list")["result"] if a["code"] == "suspected_mi"][-1]
        assert mi_alarm["active"]
        assert call(_sock(tmp_path), "alarm/ack", alarm_id=mi_alarm["id"], by="crew-7")["ok"]
        assert _stop(proc) == 0
        assert notify.has("STOPPING=1")
        n_before = len(_results_from_store(tmp_path))
        proc = _start_daemon(_config(tmp_path), tmp_path)
        _wait_ready(proc, tmp_path)
        after = _wait_results(proc, tmp_path, lambda rs: len(rs) >= n_before + 2)[n_before:]
        alarms_now = call(_sock(tmp_path), "alarms/list")["result"]
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sim.stop()
    # The continuing condition is the SAME alarm, still acknowledged: not a new unacknowledged one.
    assert all(d["probabilities"]["MI"] >= th["MI"] for d in after), [d["probabilities"] for d in after]
    for d in after:
        mi = [a for a in d["alarms"] if a["code"] == "suspected_mi"]
        assert mi and mi[0]["id"] == mi_alarm["id"] and mi[0]["acknowledged_by"] == "crew-7", mi
    cont = [a for a in alarms_now if a["code"] == "suspected_mi"]
    assert [a["id"] for a in cont] == [mi_alarm["id"]] and cont[0]["active"] and cont[0]["acknowledged_by"] == "crew-7"
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    stop1 = min(i for i, e in enumerate(audit) if e["kind"] == "stop")
    restored = [e["data"] for e in audit[stop1:] if e["kind"] == "alarm_restored"]
    assert [r["id"] for r in restored if r["code"] == "suspected_mi"] == [mi_alarm["id"]]
    assert [r["acknowledged_by"] for r in restored if r["code"] == "suspected_mi"] == ["crew-7"]
    assert not [e for e in audit[stop1:] if e["kind"] == "alarm" and e["data"]["code"] == "suspected_mi"]
    v = _cli("audit", "verify", "--config", str(tmp_path / "config.toml"))
    assert v.returncode == 0, v.stdout
    kinds = v.stdout
    for k in ("result", "alarm", "patient_set", "model_loaded", "start", "stop"):
        assert k in kinds, kinds


def test_electrode_off_gives_cannot_interpret_within_one_window_then_recovers(tmp_path):
    # Stream time: V2 electrode off from 22 s to 34 s. Windows every 5 s: [15,25) is the first to contain it.
    sim = _sim(tmp_path, NORM_RECORD, speed=4.0, faults=("electrode_off:V2@22+12",))
    proc = _start_daemon(_config(tmp_path), tmp_path)
    try:
        _wait_ready(proc, tmp_path)
        res = _wait_results(proc, tmp_path, lambda rs: any(d["window"]["start_s"] >= 40 for d in rs), timeout=90)
    finally:
        _stop(proc)
        sim.stop()
    by_start = {d["window"]["start_s"]: d for d in res}
    first_bad = by_start[15.0]
    assert first_bad["triage_level"] == "cannot_interpret", first_bad["quality"]
    assert first_bad["probabilities"] is None
    tech = [a for a in first_bad["alarms"] if a["kind"] == "technical"]
    assert tech and tech[0]["code"] == "signal_unusable"
    assert "V2" in first_bad["quality"]["electrodes_off"]
    for s in (20.0, 25.0, 30.0):                     # every window overlapping the fault
        assert by_start[s]["triage_level"] == "cannot_interpret"
    after = [d for d in res if d["window"]["start_s"] >= 35.0]
    assert after and after[0]["triage_level"] != "cannot_interpret", after[0]["quality"]
    assert after[0]["probabilities"] is not None


def test_pulled_cable_and_frontend_reset_are_survived(tmp_path):
    sim = _sim(tmp_path, NORM_RECORD, speed=3.0, faults=("disconnect@12+3", "reset@30"))
    proc = _start_daemon(_config(tmp_path), tmp_path)
    try:
        _wait_ready(proc, tmp_path)
        res = _wait_results(proc, tmp_path, lambda rs: sum(d["gap_before"] for d in rs) >= 2
                            and rs[-1]["gap_before"] is False and len(rs) >= 5, timeout=120)
        st = call(_sock(tmp_path), "status")["result"]
        assert st["frontend"]["status"] == "streaming"
        assert st["counters"]["gaps"] >= 2
        assert proc.poll() is None
    finally:
        _stop(proc)
        sim.stop()
    gaps = [d for d in res if d["gap_before"]]
    for d in gaps:                                    # the first window after a gap starts at the gap
        assert any("gap" in r for r in d["quality"]["reasons"])
    # No window spans a gap: windows after a gap start exactly where a new segment started.
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    gap_idx = [e["data"]["at_index"] for e in audit if e["kind"] == "stream_gap"]
    for d in res:
        for g in gap_idx:
            assert not (d["window"]["start_index"] < g < d["window"]["end_index"]), (d["window"], g)
    assert _cli("audit", "verify", "--file", str(tmp_path / "state" / "audit.jsonl")).returncode == 0


def test_sigkill_while_writing_loses_nothing_and_restart_verifies(tmp_path):
    # stride 1 s at 8x: a result (JSON + WFDB strip + audit entry) every ~125 ms, so a kill lands mid-write.
    sim = _sim(tmp_path, NORM_RECORD, speed=8.0)
    port = _free_port()
    cfg = _config(tmp_path, stride=1.0, extra=f"[display]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n")
    proc = _start_daemon(cfg, tmp_path)
    seen: set[str] = set()
    try:
        _wait_ready(proc, tmp_path)
        res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= 8, timeout=90)
        seen |= {d["id"] for d in res}
        time.sleep(0.37)
        seen |= {d["id"] for d in _results(tmp_path)}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc._log.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    audit_before = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_bytes().splitlines()
                    if x.strip().endswith(b"}")]
    committed = {e["data"]["id"] for e in audit_before if e.get("kind") == "result"}
    proc2 = _start_daemon(cfg, tmp_path)
    try:
        _wait_ready(proc2, tmp_path)
        # The bedside page's history (and banner) come back from the store, not only from this process.
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/results?limit=200", timeout=10) as r:
            shown = {d["id"] for d in json.loads(r.read())["results"]}
        assert seen <= shown, f"results from before the restart missing on the page: {len(seen - shown)}"
        _wait_results(proc2, tmp_path, lambda rs: len(rs) > len(seen) + 2, timeout=60)
    finally:
        assert _stop(proc2) == 0
        sim.stop()
    store = _cli("store", "verify", "--config", str(cfg), "--json")
    rep = json.loads(store.stdout)
    assert rep["ok"], rep["problems"]
    from edge_app.storage import ResultStore
    s = ResultStore(tmp_path / "state")
    ids = set(s.ids())
    s.close()
    assert seen <= ids, f"results reported before SIGKILL are missing: {seen - ids}"
    assert committed <= ids, f"audited results missing: {committed - ids}"
    v = _cli("audit", "verify", "--config", str(cfg))
    assert v.returncode == 0, v.stdout
    # Two processes, two run ids; the second knows the first was killed (no clean stop).
    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    starts = [e["data"] for e in audit if e["kind"] == "start"]
    assert len(starts) == 2 and starts[0]["run_id"] != starts[1]["run_id"]
    assert starts[1]["previous_run_id"] == starts[0]["run_id"] and starts[1]["previous_stop"] == "unclean"
    s = ResultStore(tmp_path / "state")
    try:
        by_run = {d["run_id"] for d in s.latest(100)}
    finally:
        s.close()
    assert by_run == {starts[0]["run_id"], starts[1]["run_id"]}
    # No stray temp files or orphan strips left behind.
    day_files = [p for p in (tmp_path / "state" / "store" / "results").rglob("*")]
    assert not [p for p in day_files if p.name.startswith(".")]
    stems = {p.stem for p in day_files if p.suffix == ".json"}
    assert {p.stem for p in day_files if p.suffix in (".hea", ".dat")} <= stems


@pytest.mark.parametrize("body,key", [
    ("[windows]\nstride_s = 0\n", "windows.stride_s"),
    ("[frontend]\nbaud = 9600\n", "frontend.baud"),
    ("[frontend]\nbaudrate = \"fast\"\n", "frontend.baudrate"),
    ("[triage]\nhr_low_bpm = 100\nhr_high_bpm = 90\n", "triage.hr_low_bpm"),
    ("[model.thresholds]\nMI = 1.5\n", "model.thresholds.MI"),
    ("[mqtt]\nport = 70000\n", "mqtt.port"),
    ("[wat]\nx = 1\n", "wat"),
    ("[windows\nstride_s = 5\n", "<file>"),
])
def test_malformed_config_is_refused_with_key_and_fix(tmp_path, body, key):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    r = _cli("run", "--config", str(p), timeout=30)
    assert r.returncode == 2
    assert f"'{key}'" in r.stderr and "Fix:" in r.stderr, r.stderr
    c = _cli("config", "check", str(p))
    assert c.returncode == 2 and key in c.stdout and "Fix:" in c.stdout


def test_full_store_raises_a_technical_alarm_and_deletes_nothing_undelivered(tmp_path):
    # 1 MiB budget, ~125 kB per result (JSON + 10 s WFDB strip), no uplink: nothing is ever delivered.
    sim = _sim(tmp_path, NORM_RECORD, speed=8.0)
    cfg = _config(tmp_path, stride=1.0, storage="max_bytes = 1048576")
    proc = _start_daemon(cfg, tmp_path)
    try:
        _wait_ready(proc, tmp_path)
        res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= 12, timeout=90)
        st = call(_sock(tmp_path), "status")["result"]
    finally:
        _stop(proc)
        sim.stop()
    assert st["store"]["full"] and st["store"]["results"] >= 12 and st["store"]["undelivered"] >= 12
    full = [a for a in st["alarms_active"] if a["code"] == "store_full"]
    assert full and full[0]["kind"] == "technical", st["alarms_active"]
    assert {d["id"] for d in res} <= set(call_ids(tmp_path))


def call_ids(tmp: Path) -> list[str]:
    from edge_app.storage import ResultStore
    s = ResultStore(tmp / "state")
    try:
        return s.ids()
    finally:
        s.close()


def test_watchdog_stops_when_inference_overruns_its_deadline(tmp_path):
    """Samples keep arriving, but every analysis takes longer than model.deadline_s (set absurdly low):
    the daemon must stop feeding systemd's watchdog (so systemd would restart it)."""
    sim = _sim(tmp_path, NORM_RECORD, speed=4.0)
    notify = Notify(tmp_path)
    cfg = _config(tmp_path, extra="[model]\ndeadline_s = 0.001\n")
    proc = _start_daemon(cfg, tmp_path, notify=notify, watchdog_usec=1_000_000)
    try:
        _wait_ready(proc, tmp_path)
        assert notify.has("WATCHDOG=1"), "no pings while samples flow before the first window"
        _wait_results(proc, tmp_path, lambda rs: len(rs) >= 1, timeout=60)
        time.sleep(0.6)
        notify.messages.clear()
        notify.drain()
        notify.messages.clear()
        time.sleep(2.0)
        pings = [m for m in notify.drain() if "WATCHDOG=1" in m.split("\n")]
        st = call(_sock(tmp_path), "status")["result"]
    finally:
        _stop(proc)
        sim.stop()
    assert not pings, f"watchdog still fed although analysis overran: {pings}"
    assert st["watchdog"]["healthy"] is False and "deadline" in st["watchdog"]["detail"]
    assert st["counters"]["overruns"] >= 1


def test_front_end_rate_from_config_1000hz(tmp_path):
    """[frontend] fs = 1000: the driver asks the device for 1000 Hz; windows are 10 000 native samples."""
    sim = _sim(tmp_path, NORM_RECORD, speed=4.0)
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[frontend]\n", "[frontend]\nfs = 1000\n"))
    proc = _start_daemon(cfg, tmp_path)
    try:
        _wait_ready(proc, tmp_path)
        res = _wait_results(proc, tmp_path, lambda rs: len(rs) >= 2, timeout=60)
    finally:
        _stop(proc)
        sim.stop()
    for d in res:
        assert d["window"]["fs"] == 1000.0 and d["window"]["end_index"] - d["window"]["start_index"] == 10000
        assert d["strip"]["fs"] == 1000.0 and d["probabilities"] is not None
