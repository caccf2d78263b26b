"""End-to-end runs of the whole appliance on loopback: front end -> daemon -> real Mosquitto -> subscriber.

    python benchmarks/soak.py soak     [--duration 150] [--json]   faults on a schedule, then full accounting
    python benchmarks/soak.py latency  [--duration 60]  [--json]   real time 500 Hz, no faults: last sample ->
                                                                   MQTT message at a subscriber, CPU, RSS
    python benchmarks/soak.py rtf      [--duration 45]  [--json]   replayed as fast as possible: real-time factor

Parts (all real): the pty front-end simulator (firmware_bridge.simulator, in this process, recording every
frame it makes: wall time, stream time, fate) replaying real PTB-XL 500 Hz records (the 42 official-layout
fixture records joined into one 420 s WFDB record, looped); `python -m edge_app.cli run` as a subprocess
with [mqtt] enabled; /usr/sbin/mosquitto on a free loopback port (persistence on, so a broker restart keeps
the subscriber's session); a QoS 1 subscriber with a persistent session recording every message and when it
arrived. This script is the supervisor: it restarts the daemon when it dies, as systemd would.

Faults (soak), one cycle every 150 s, repeated for --duration; front-end faults are in stream time:
  +18 s  electrode LA off for 16 s       +40 s  EMG-like noise burst, 400 uV rms, 16 s
  +62 s  3 frames with corrupted bytes   +80 s  cable pulled for 3 s (pty closed; --link path comes back)
  +95 s  broker stopped (SIGTERM) for 12 s, then restarted on the same port      (wall time)
  +120 s daemon SIGKILLed, restarted at once by this supervisor                   (wall time)
         (every cycle, or every N-th with --kill-every N, so long runs also show long daemon lifetimes)

Accounting at the end (stream time = seconds of signal the front end produced):
  * every stretch of stream time is covered by a delivered result window (a result, or "cannot interpret"
    with a reason), or lies inside a break in the stream (frames not delivered: corrupted, dropped, produced
    while the daemon was dead; a cable pull; the end of the run) or within one window length (10 s) before
    such a break (a segment's unfinished tail; windows never span a break). Anything else is UNACCOUNTED.
    Windows are placed on the stream timeline from the daemon's own clock (result time minus
    since_last_sample_ms = arrival of the block that completed the window) against the simulator's frame
    log; a segment's first window starts exactly at the segment's known start (a host START or the end of
    undelivered frames) found at most 0.6 s before that estimate (the estimate is late by the resampler's
    look-ahead, never early). Anchored segments and the clock lags are reported.
  * every break the front end caused is reported by the daemon (audit `stream_gap` / result `gap_before`,
    or for a daemon restart an audit `start` and the broker's Last Will `offline` on MQTT);
  * nothing duplicated: no result id under two msg_ids, no window analysed twice (same daemon run and
    window start); repeats of the same msg_id (QoS 1 at-least-once, documented) are counted separately;
  * nothing lost: every result in the daemon's store (and audit log) reached the subscriber;
  * memory: daemon RSS sampled every second; growth after a 30 s warm-up and slope per daemon lifetime
    (a lifetime of 90 s or more growing by more than 20 MB, or 10 %, fails).
Exit code 1 when anything is lost, duplicated or unaccounted for (soak mode).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from firmware_bridge.simulator import FrontEndSimulator, parse_fault  # noqa: E402

FIXTURE_500 = ROOT / "tests" / "fixtures" / "ptbxl_official_sample" / "records500"
DEVICE = "soak-dev"
FS = 500
LENGTH_S = 10.0
CYCLE_S = 150.0
TOL_S = 0.5
MEM_GROWTH_MB = 20.0  # RSS growth after warm-up within one daemon lifetime that fails the soak
ANCHOR_S = 0.6        # how far the clock estimate of a segment start may lag its known start


# --------------------------------------------------------------------------------------------- inputs
def joined_record(out_dir: Path, limit: int | None = None) -> tuple[Path, int]:
    """The 42 real PTB-XL 500 Hz fixture records, end to end, as one WFDB record (so a long run replays many
    patients, not one 10 s strip). Returns (record base path, number of records)."""
    import wfdb
    heads = sorted(FIXTURE_500.glob("*/*_hr.hea"))[:limit]
    if not heads:
        raise SystemExit(f"error: no 500 Hz records under {FIXTURE_500}")
    sigs, names = [], None
    for h in heads:
        r = wfdb.rdrecord(str(h.with_suffix("")))
        if names is None:
            names = r.sig_name
        order = [r.sig_name.index(n) for n in names]
        sigs.append(np.nan_to_num(r.p_signal[:, order]))
    x = np.concatenate(sigs)
    out_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp("ptbxl_joined", fs=FS, units=["mV"] * len(names), sig_name=list(names), p_signal=x,
                fmt=["16"] * len(names), adc_gain=[1000.0] * len(names), baseline=[0] * len(names),
                write_dir=str(out_dir))
    return out_dir / "ptbxl_joined", len(heads)


# --------------------------------------------------------------------------------------- front end
class RecordingSimulator(FrontEndSimulator):
    """The real simulator, plus a log of every frame it made (wall time, stream time, fate) and of the host's
    START commands, so the run can be compared with what the subscriber received."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.frames: list[tuple[float, float, int, str]] = []    # (wall, stream t0, samples, fate)
        self.starts: list[tuple[float, float]] = []              # (wall, stream time) of each host START
        self.disconnects: list[tuple[float, float]] = []

    def _produce_frame(self) -> bool:
        st = self.stats
        before = (st.frames_sent, st.frames_dropped, st.frames_corrupted, st.frames_unread, st.disconnects)
        t0, n = self.stream_time_s, self._spf()
        ok = super()._produce_frame()
        now = time.time()
        if st.disconnects != before[4]:
            self.disconnects.append((now, t0))
        if not ok:
            return ok
        if st.frames_dropped != before[1]:
            fate = "dropped"
        elif st.frames_unread != before[3]:
            fate = "unread"
        elif st.frames_corrupted != before[2]:
            fate = "corrupted"
        else:
            fate = "sent"
        self.frames.append((now, t0, n, fate))
        return ok

    def _spf(self) -> int:
        from firmware_bridge import protocol as P
        return P.samples_per_frame(self.rate)

    def _command(self, msg: Any) -> None:
        from firmware_bridge import protocol as P
        if isinstance(msg, P.Start) and not self.streaming:
            self.starts.append((time.time(), self.stream_time_s))
        super()._command(msg)


# ------------------------------------------------------------------------------------------ subscriber
class Subscriber:
    """QoS 1 subscriber with a persistent session: records (arrival wall time, topic, payload) of everything."""

    def __init__(self, port: int, prefix: str = "ecg") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self._sub = threading.Event()
        self.connects = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"soak-subscriber-{os.getpid()}")
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_message = self._on_message

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            self.connects += 1
            c.subscribe(f"{prefix}/{DEVICE}/#", qos=1)
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self._sub.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 24 * 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._sub.wait(15):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload)))

    def on(self, leaf: str) -> list[tuple[float, Any]]:
        with self._lock:
            msgs = list(self.messages)
        out = []
        for t, topic, p in msgs:
            if topic.endswith("/" + leaf):
                try:
                    out.append((t, json.loads(p)))
                except ValueError:
                    out.append((t, p.decode(errors="replace")))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------------------------- daemon
class Supervisor:
    """Starts `ecg-edge run` (as systemd would: NOTIFY_SOCKET, READY=1), restarts it when it dies, kills it
    on request, and samples its RSS and CPU once a second."""

    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp, self.config = tmp, config
        self.proc: subprocess.Popen | None = None
        self.runs: list[dict[str, Any]] = []       # one per daemon process
        self.rss: list[tuple[float, int, int]] = []   # (wall, pid, rss bytes)
        self.cpu: dict[int, float] = {}
        self.kills: list[float] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(tmp / "notify.sock"))
        self._sock.setblocking(False)
        self._log = open(tmp / "daemon.log", "ab")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="supervisor")

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.tmp / "notify.sock"), PYTHONUNBUFFERED="1")
        t = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(self.config)],
                                     cwd=str(ROOT), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.runs.append({"pid": self.proc.pid, "spawned": t, "ready": None, "ended": None, "how": None})

    def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.runs[-1]["ready"] is not None:
                return self.runs[-1]["ready"] - self.runs[-1]["spawned"]
            time.sleep(0.05)
        raise RuntimeError(f"daemon not READY within {timeout} s; see {self.tmp / 'daemon.log'}")

    def _watch(self) -> None:
        import psutil
        last = 0.0
        while not self._stop.is_set():
            try:
                while True:
                    msg = self._sock.recv(4096).decode()
                    if "READY=1" in msg.split("\n") and self.runs[-1]["ready"] is None:
                        self.runs[-1]["ready"] = time.time()
            except BlockingIOError:
                pass
            with self._lock:
                p = self.proc
                if p is not None and p.poll() is not None:        # died: restart (systemd Restart=always)
                    self.runs[-1]["ended"] = time.time()
                    self.runs[-1]["how"] = self.runs[-1]["how"] or f"exit {p.returncode}"
                    self._spawn()
                    p = self.proc
            now = time.monotonic()
            if p is not None and now - last >= 1.0:
                last = now
                try:
                    pp = psutil.Process(p.pid)
                    self.rss.append((time.time(), p.pid, pp.memory_info().rss))
                    c = pp.cpu_times()
                    self.cpu[p.pid] = c.user + c.system
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def kill(self) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.runs[-1]["how"] = "SIGKILL by the soak"
                self.kills.append(time.time())
                self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
            self.runs[-1]["how"] = self.runs[-1]["how"] or "SIGTERM at the end"
        if p is not None:
            self.runs[-1]["ended"] = time.time()
        self._log.close()
        self._sock.close()

    def control(self, cmd: str, **args: Any) -> Any:
        from edge_app.control_socket import call
        return call(self.tmp / "state" / "control.sock", cmd, **args)["result"]


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Harness:
    tmp: Path
    sim: RecordingSimulator
    broker: Any
    sub: Subscriber
    sup: Supervisor
    t_stream0: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)

    def say(self, quiet: bool, text: str) -> None:
        self.events.append((time.time(), text))
        if not quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def setup(tmp: Path, speed: float, faults: list[str], stride: float, quiet: bool, records: int | None = None) -> Harness:
    from mosquitto_broker import MosquittoBroker
    rec, nrec = joined_record(tmp / "record", records)
    broker = MosquittoBroker(tmp / "broker", persistence=True).start()
    sub = Subscriber(broker.port)
    sim = RecordingSimulator(str(rec), fs=FS, speed=speed, loop=True, faults=[parse_fault(f) for f in faults],
                             link_path=str(tmp / "frontend"), seed=1)
    cfg = tmp / "config.toml"
    cfg.write_text(f'[device]\nid = "{DEVICE}"\n[frontend]\nport = "{tmp / "frontend"}"\nfs = {FS}\n'
                   f'[windows]\nstride_s = {stride}\n[storage]\nstate_dir = "{tmp / "state"}"\n'
                   f'[logging]\nlevel = "INFO"\n'
                   f'[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
                   f'keepalive_s = 5\n')
    sup = Supervisor(tmp, cfg)
    h = Harness(tmp, sim, broker, sub, sup)
    h.say(quiet, f"{nrec} real PTB-XL 500 Hz records joined ({tmp / 'record'}); mosquitto on 127.0.0.1:{broker.port}")
    sim.start()
    sup.start()
    ready = sup.wait_ready()
    h.say(quiet, f"daemon READY in {ready:.2f} s (pid {sup.runs[-1]['pid']})")
    return h


def teardown(h: Harness) -> None:
    for fn in (h.sup.stop, h.sim.stop, h.sub.close, h.broker.stop):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - tear everything down regardless
            print(f"teardown: {e}", file=sys.stderr)


def _parse_time(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def _rss_summary(sup: Supervisor, warmup_s: float = 30.0) -> dict[str, Any]:
    """Per daemon lifetime: RSS after warm-up, at the end, growth, least-squares slope (MB/hour)."""
    by: dict[int, list[tuple[float, int]]] = {}
    for t, pid, r in sup.rss:
        by.setdefault(pid, []).append((t, r))
    out = []
    for pid, s in by.items():
        t0 = s[0][0]
        post = [(t, r) for t, r in s if t - t0 >= warmup_s]
        d = {"pid": pid, "seconds": round(s[-1][0] - t0, 1), "rss_max_mb": round(max(r for _, r in s) / 2 ** 20, 1),
             "rss_end_mb": round(s[-1][1] / 2 ** 20, 1)}
        if len(post) >= 10:
            t = np.array([p[0] for p in post]) - post[0][0]
            r = np.array([p[1] for p in post]) / 2 ** 20
            k = max(1, len(r) // 10)
            d["rss_after_warmup_mb"] = round(float(np.median(r[:k])), 1)
            d["growth_after_warmup_mb"] = round(float(np.median(r[-k:]) - np.median(r[:k])), 2)
            d["slope_mb_per_hour"] = round(float(np.polyfit(t, r, 1)[0] * 3600), 2)
        out.append(d)
    return {"per_daemon": out, "warmup_s": warmup_s}


# -------------------------------------------------------------------------------------------- modes
def wait_delivered(h: Harness, timeout: float = 90.0) -> dict[str, Any]:
    """After the stream stops: wait until the store says everything is delivered and the subscriber has it."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            st = h.sup.control("store/stats")
        except Exception:  # noqa: BLE001 - daemon restarting
            time.sleep(0.5)
            continue
        got = {m["result"]["id"] for _, m in h.sub.on("triage") if isinstance(m, dict)}
        if st.get("undelivered", 1) == 0 and len(got) >= st.get("results", 0):
            break
        time.sleep(0.5)
    time.sleep(1.0)
    return st


def import_footprint() -> dict[str, float]:
    """RSS (MB) of a fresh Python after importing what the daemon imports, cumulatively: where the daemon's
    resident memory goes (measured in separate processes, so nothing else is counted)."""
    steps = [("python+numpy", "numpy"), ("+scipy.signal", "scipy.signal"), ("+wfdb (pandas)", "wfdb"),
             ("+LiteRT interpreter", "ai_edge_litert.interpreter"), ("+paho-mqtt", "paho.mqtt.client"),
             ("+edge_app daemon modules", "edge_app.daemon,edge_app.inference,edge_app.signal_chain.quality,"
                                          "edge_app.signal_chain.beats,edge_app.uplink.service")]
    out: dict[str, float] = {}
    mods: list[str] = []
    for label, m in steps:
        mods += m.split(",")
        code = ("import importlib, psutil\nfor m in %r: importlib.import_module(m)\n"
                "print(psutil.Process().memory_info().rss)" % mods)
        p = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            out[label] = round(int(p.stdout.strip().splitlines()[-1]) / 2 ** 20, 1)
    return out


def mode_latency(a: argparse.Namespace) -> dict[str, Any]:
    """Real time, no faults: last sample (as the front end emitted it) -> MQTT message at the subscriber.
    Split: emitted -> the block that completes the window arrives (the streaming resampler's look-ahead: the
    100 Hz sample at the window's end needs a few native samples after it) -> analysed -> stored, audited,
    queued (daemon's own clock) -> at the subscriber."""
    import psutil
    tmp = Path(tempfile.mkdtemp(prefix="soak-latency-"))
    h = setup(tmp, 1.0, [], a.stride, a.json)
    try:
        time.sleep(2.0)                    # connect + first samples
        pid = h.sup.runs[-1]["pid"]
        p = psutil.Process(pid)
        c0, w0 = p.cpu_times(), time.monotonic()
        n0 = len(h.sup.rss)
        time.sleep(a.duration)
        c1, wall = p.cpu_times(), time.monotonic() - w0
        rss = [r for _, q, r in h.sup.rss[n0:] if q == pid]
        h.sim.stop()
        wait_delivered(h, 30)
        status = h.sup.control("status")
    finally:
        teardown(h)
    frames = [f for f in h.sim.frames if f[3] == "sent"]
    fwall = [f[0] for f in frames]
    fend = np.array([f[1] + f[2] / FS for f in frames])
    lat, internal, lookahead = [], [], []
    first = h.sim.starts[0][1] if h.sim.starts else 0.0
    for t_recv, m in h.sub.on("triage"):
        r = m["result"]
        t_end = first + r["window"]["end_index"] / r["window"]["fs"]     # one daemon run, no breaks
        k = int(np.searchsorted(fend, t_end - 1e-6))
        if k < len(frames):
            lat.append((t_recv - fwall[k]) * 1000.0)
            internal.append(r["timings_ms"].get("since_last_sample_ms", float("nan")))
            arrival = _parse_time(r["time"]) - r["timings_ms"].get("since_last_sample_ms", 0.0) / 1000.0
            lookahead.append((arrival - fwall[k]) * 1000.0)
    cpu = (c1.user - c0.user + c1.system - c0.system) / wall
    return {"mode": "latency", "speed": 1.0, "fs_hz": FS, "stride_s": a.stride, "seconds": round(wall, 1),
            "results": len(lat),
            "latency_last_sample_to_subscriber_ms": {"median": round(statistics.median(lat), 1) if lat else None,
                                                     "p99": round(_pct(lat, 0.99), 1), "max": round(max(lat), 1) if lat else None},
            "emitted_to_window_complete_ms_median": round(statistics.median(lookahead), 1) if lookahead else None,
            "daemon_last_sample_to_analysed_ms_median": round(statistics.median(internal), 1) if internal else None,
            "daemon_last_sample_to_stored_and_queued_ms": status.get("latency_ms"),
            "daemon_cpu_pct_one_core": round(100 * cpu, 1),
            "daemon_rss_mb": {"max": round(max(rss) / 2 ** 20, 1) if rss else None,
                              "end": round(rss[-1] / 2 ** 20, 1) if rss else None},
            "counters": status.get("counters"), "load_avg_1m": round(os.getloadavg()[0], 2),
            "import_footprint_rss_mb": import_footprint()}


def mode_rtf(a: argparse.Namespace) -> dict[str, Any]:
    """As fast as possible: the simulator at speed 0 (as fast as the host reads) -> the whole chain to the
    outbox and the broker. Real-time factor = seconds of ECG analysed per wall second."""
    import psutil
    tmp = Path(tempfile.mkdtemp(prefix="soak-rtf-"))
    h = setup(tmp, 0.0, [], a.stride, a.json)
    try:
        pid = h.sup.runs[-1]["pid"]
        p = psutil.Process(pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and h.sup.control("status")["counters"]["windows"] < 2:
            time.sleep(0.2)
        s0 = h.sup.control("status")
        c0, w0 = p.cpu_times(), time.monotonic()
        time.sleep(a.duration)
        s1 = h.sup.control("status")
        c1, wall = p.cpu_times(), time.monotonic() - w0
        h.sim.stop()
        wait_delivered(h, 60)
        res = {m["result"]["id"]: m["result"] for _, m in h.sub.on("triage")}
        delivered = len(res)
    finally:
        teardown(h)
    timings: dict[str, float] = {}
    for k in ("quality_ms", "beats_ms", "model_ms", "explain_ms", "analysis_ms", "since_last_sample_ms"):
        v = [r["timings_ms"][k] for r in res.values() if k in r.get("timings_ms", {})]
        if v:
            timings[k] = round(statistics.median(v), 1)
    win = s1["counters"]["windows"] - s0["counters"]["windows"]
    ecg_s = win * a.stride                        # each window advances the stream by one stride
    cpu = c1.user - c0.user + c1.system - c0.system
    return {"mode": "rtf", "stride_s": a.stride, "seconds": round(wall, 1), "windows": win,
            "ecg_seconds_analysed": ecg_s, "real_time_factor": round(ecg_s / wall, 1),
            "ecg_seconds_per_daemon_cpu_second": round(ecg_s / cpu, 1) if cpu else None,
            "daemon_cpu_pct_one_core": round(100 * cpu / wall, 1),
            "samples_received": s1["counters"]["samples"] - s0["counters"]["samples"],
            "results_delivered_to_subscriber": delivered, "load_avg_1m": round(os.getloadavg()[0], 2),
            "median_timings_ms_per_window": timings,
            "analysis_only_real_time_factor": round(1000 * a.stride / timings["analysis_ms"], 1)
            if timings.get("analysis_ms") else None,
            "note": "front end (pty simulator) in the benchmark process at speed 0; daemon in its own process "
                    "(decode -> condition -> quality -> model -> explanation -> triage -> store -> outbox -> MQTT)"}


def schedule(duration: float, kill_every: int = 1) -> tuple[list[str], list[tuple[float, str]]]:
    """Front-end faults (stream time) and supervisor actions (wall seconds after streaming began).
    kill_every: SIGKILL the daemon in every k-th cycle only (longer lifetimes show the memory trend)."""
    sim, sup = [], []
    k = 0
    while k * CYCLE_S + 60 <= duration + 1e-9 or k == 0:
        o = k * CYCLE_S
        # 16 s faults: at a 5 s stride at least one 10 s window lies wholly inside, wherever the window grid falls
        sim += [f"electrode_off:LA@{o + 18}+16", f"noise:400@{o + 40}+16", f"corrupt:3@{o + 62}",
                f"disconnect:3@{o + 80}"]
        sup += [(o + 95, "broker_stop"), (o + 107, "broker_start")]
        if (k + 1) % kill_every == 0:
            sup.append((o + 120, "daemon_kill"))
        k += 1
    return sim, [s for s in sup if s[0] < duration]


def mode_soak(a: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    sim_faults, actions = schedule(a.duration, a.kill_every)
    h = setup(tmp, 1.0, sim_faults, a.stride, a.json)
    try:
        t0 = time.time()
        h.say(a.json, f"soak: {a.duration:.0f} s, faults {sim_faults}, actions {actions}")
        for at, what in actions:
            while time.time() - t0 < at:
                time.sleep(0.05)
            if what == "broker_stop":
                h.broker.stop()
            elif what == "broker_start":
                h.broker.start()
            elif what == "daemon_kill":
                h.sup.kill()
            h.say(a.json, f"{what} at +{time.time() - t0:.1f} s (stream {h.sim.stream_time_s:.1f} s)")
        while time.time() - t0 < a.duration:
            time.sleep(0.1)
        h.sim.stop()
        h.say(a.json, f"front end stopped at stream {h.sim.stream_time_s:.1f} s; waiting for delivery")
        final_store = wait_delivered(h, 120)
        status = h.sup.control("status")
    finally:
        teardown(h)
    save_raw(h, status, final_store)
    rep = account(h, status, final_store)
    rep.update(mode="soak", duration_s=a.duration, stride_s=a.stride, front_end_faults=sim_faults,
               supervisor_actions=[{"at_s": t, "action": w} for t, w in actions], workdir=str(tmp))
    return rep


# ----------------------------------------------------------------------------------------- accounting
def save_raw(h: Harness, status: dict[str, Any], final_store: dict[str, Any]) -> Path:
    """Everything the accounting reads, so `soak.py account WORKDIR` can redo it offline."""
    import pickle
    from types import SimpleNamespace as NS
    raw = NS(tmp=h.tmp, sim=NS(frames=h.sim.frames, starts=h.sim.starts, disconnects=h.sim.disconnects,
                               faults=h.sim.faults, stats=NS(events=list(h.sim.stats.events))),
             sub=NS(messages=list(h.sub.messages), connects=h.sub.connects),
             sup=NS(runs=h.sup.runs, kills=h.sup.kills, rss=h.sup.rss), status=status, final_store=final_store)
    path = h.tmp / "raw.pickle"
    path.write_bytes(pickle.dumps(raw))
    return path


def load_raw(workdir: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    import pickle
    raw = pickle.loads((workdir / "raw.pickle").read_bytes())
    raw.sub.on = lambda leaf, _m=raw.sub.messages: Subscriber.on(type("S", (), {"_lock": threading.Lock(),
                                                                                "messages": _m})(), leaf)
    return raw, raw.status, raw.final_store


def _read_audit(path: Path) -> list[dict[str, Any]]:
    out = []
    for ln in path.read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


def _store_results(state: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in (state / "store" / "results").glob("*/*.json"):
        try:
            d = json.loads(p.read_text())
            out[d["id"]] = d
        except (ValueError, KeyError, OSError):
            pass
    return out


def account(h: Harness, status: dict[str, Any], final_store: dict[str, Any]) -> dict[str, Any]:
    state = h.tmp / "state"
    frames = h.sim.frames
    fstep = 1.0 / 50                                                   # one frame at 500 Hz = 10 samples
    T = frames[-1][1] + frames[-1][2] / FS if frames else 0.0
    nslots = int(np.ceil(T / fstep))
    sent_wall = np.array([f[0] for f in frames if f[3] == "sent"])
    sent_end = np.array([f[1] + f[2] / FS for f in frames if f[3] == "sent"])

    # --- what the daemon said (audit) and what the subscriber got
    audit = _read_audit(state / "audit.jsonl")
    run_of: dict[str, int] = {}
    run = -1
    gaps_audit = []
    for e in audit:
        if e["kind"] == "start":
            run += 1
        elif e["kind"] == "result":
            run_of[e["data"]["id"]] = run
        elif e["kind"] == "stream_gap":
            gaps_audit.append((_parse_time(e["time"]), run, e["data"]))
    store = _store_results(state)
    triage = [(t, m) for t, m in h.sub.on("triage") if isinstance(m, dict)]
    by_msg: dict[str, list] = {}
    for t, m in triage:
        by_msg.setdefault(m["msg_id"], []).append((t, m))
    redeliveries = sum(len(v) - 1 for v in by_msg.values())
    first = {k: v[0] for k, v in by_msg.items()}
    msgs_of_result: dict[str, set] = {}
    for k, (t, m) in first.items():
        msgs_of_result.setdefault(m["result"]["id"], set()).add(k)
    dup_results = sorted(r for r, ms in msgs_of_result.items() if len(ms) > 1)
    got = {m["result"]["id"]: (t, m["result"]) for t, m in first.values()}
    lost = sorted(set(store) - set(got))
    audit_not_stored = sorted(set(run_of) - set(store))
    unknown = sorted(set(got) - set(store))
    seen_windows: dict[tuple, str] = {}
    dup_windows = []
    for rid, (t, r) in got.items():
        key = (run_of.get(rid), r["window"]["start_index"])
        if key in seen_windows:
            dup_windows.append([seen_windows[key], rid])
        seen_windows[key] = rid
    alarms_audit = {e["data"]["id"] for e in audit if e["kind"] == "alarm"}
    alarms_got = {m["alarm"]["id"] for _, m in h.sub.on("alarm") if isinstance(m, dict) and "alarm" in m}

    # --- breaks in the stream (front end's and supervisor's view)
    breaks = []
    run_start = None
    for f in frames:
        if f[3] != "sent":
            if run_start is None:
                run_start = (f[1], f[3])
            last = f[1] + f[2] / FS
        elif run_start is not None:
            breaks.append({"start": run_start[0], "end": last, "why": f"frames {run_start[1]}"})
            run_start = None
    if run_start is not None:
        breaks.append({"start": run_start[0], "end": T, "why": f"frames {run_start[1]}"})
    starts = h.sim.starts
    for w, t in h.sim.disconnects:
        nxt = [s for s in starts if s[0] > w]
        breaks.append({"start": t, "end": nxt[0][1] if nxt else T, "why": "cable pulled"})
    for kw in h.sup.kills:
        k = int(np.searchsorted(sent_wall, kw, side="right")) - 1
        t_kill = sent_end[k] if k >= 0 else 0.0
        nxt = [s for s in starts if s[0] > kw]
        breaks.append({"start": t_kill, "end": nxt[0][1] if nxt else T, "why": "daemon killed"})
    breaks.append({"start": T, "end": T, "why": "end of run"})

    # --- place every delivered window on the stream timeline
    # A contiguous segment's first window starts exactly where the segment starts: at a host START (a daemon
    # (re)start or a reconnect after a cable pull) or at the end of a run of undelivered frames. The daemon's
    # clock says roughly where (arrival of the completing block, late by the resampler's look-ahead and the
    # scheduling, never early); the known segment start at most ANCHOR_S before that estimate places the
    # segment exactly. A segment with no such anchor keeps the clock estimate (counted and reported).
    anchors = sorted({round(t, 4) for _, t in h.sim.starts} | {round(b["end"], 4) for b in breaks
                                                                 if b["why"].startswith("frames")})
    groups: dict[tuple, list] = {}
    seg = {}
    for rid, (t, r) in sorted(got.items(), key=lambda kv: (run_of.get(kv[0], -1), kv[1][1]["window"]["start_index"])):
        ru = run_of.get(rid, -1)
        if r.get("gap_before") or ru not in seg:
            seg[ru] = seg.get(ru, -1) + 1
        arrival = _parse_time(r["time"]) - r["timings_ms"].get("since_last_sample_ms", 0.0) / 1000.0
        k = int(np.searchsorted(sent_wall, arrival, side="right")) - 1
        off = (sent_end[k] if k >= 0 else 0.0) - r["window"]["end_index"] / r["window"]["fs"]
        groups.setdefault((ru, seg[ru]), []).append((rid, r, off))
    windows, spreads, anchored, lags = [], [], 0, []
    for key, items in groups.items():
        offs = [o for _, _, o in items]
        off = float(min(offs))
        spreads.append(max(offs) - min(offs))
        first_start = min(r["window"]["start_index"] / r["window"]["fs"] for _, r, _ in items)
        est = first_start + off
        cand = [x for x in anchors if est - ANCHOR_S <= x <= est + 0.02]
        if cand:
            anchored += 1
            lags.append(est - cand[-1])
            off = cand[-1] - first_start
        for rid, r, _ in items:
            fs = r["window"]["fs"]
            windows.append({"id": rid, "run": key[0], "segment": key[1], "start": r["window"]["start_index"] / fs + off,
                            "end": r["window"]["end_index"] / fs + off, "level": r["triage_level"],
                            "reasons": r["quality"].get("reasons", []), "gap_before": bool(r.get("gap_before")),
                            "electrodes_off": r["quality"].get("electrodes_off", [])})

    # --- coverage on the frame grid
    grid = (np.arange(nslots) + 0.5) * fstep
    interp = np.zeros(nslots, bool)
    ci = np.zeros(nslots, bool)
    for w in windows:
        m = (grid >= w["start"] - 1e-9) & (grid <= w["end"] + 1e-9)
        if w["level"] == "cannot_interpret":
            ci |= m
        else:
            interp |= m
    covered = interp | ci
    in_break = np.zeros(nslots, bool)
    allowed = np.zeros(nslots, bool)
    for b in breaks:
        in_break |= (grid >= b["start"] - TOL_S) & (grid <= b["end"] + TOL_S)
        allowed |= (grid >= b["start"] - LENGTH_S - TOL_S) & (grid <= b["end"] + TOL_S)
    unaccounted = ~covered & ~allowed
    stretches = []
    idx = np.flatnonzero(unaccounted)
    if len(idx):
        cuts = np.flatnonzero(np.diff(idx) > 1)
        for s, e in zip(np.r_[idx[0], idx[cuts + 1]], np.r_[idx[cuts], idx[-1]]):
            stretches.append([round(float(s * fstep), 2), round(float((e + 1) * fstep), 2)])
    # 10 s slots of the front end's stream
    slots = {"result": 0, "cannot_interpret": 0, "gap": 0, "UNACCOUNTED": 0}
    per = int(round(LENGTH_S / fstep))
    for s in range(0, nslots, per):
        sl = slice(s, min(nslots, s + per))
        if unaccounted[sl].any():
            slots["UNACCOUNTED"] += 1
        elif (~covered[sl]).any():
            slots["gap"] += 1
        elif (ci[sl] & ~interp[sl]).any():
            slots["cannot_interpret"] += 1
        else:
            slots["result"] += 1
    ci_no_reason = [w["id"] for w in windows if w["level"] == "cannot_interpret" and not w["reasons"]]

    # --- were the breaks reported by the daemon?
    reported = []
    avail = [(t, m) for t, m in h.sub.on("availability")]
    for b in breaks:
        if b["why"] == "end of run":
            continue
        if b["why"] == "daemon killed":
            kw = [k for k in h.sup.kills if abs(np.interp(k, sent_wall, sent_end) - b["start"]) < 1.0]
            kt = kw[0] if kw else 0.0
            offline = any(m == "offline" and t >= kt for t, m in avail)
            restarted = any(r["spawned"] >= kt and r["ready"] for r in h.sup.runs)
            ok = offline and restarted
            how = f"Last Will 'offline' on MQTT: {offline}; daemon restarted and audited 'start': {restarted}"
        else:
            # the first frame after the break reached the daemon at ~ wall time of that frame; a stream_gap
            # audit entry (and gap_before on the next window) must follow within a few seconds
            k = int(np.searchsorted(sent_end, b["end"] + 1e-6))
            w_resume = sent_wall[k] if k < len(sent_wall) else float("inf")
            ok = any(w_resume - 1.0 <= t <= w_resume + 10.0 for t, _, _ in gaps_audit)
            nxt = [w for w in windows if w["start"] >= b["end"] - TOL_S]
            gap_flag = bool(nxt) and min(nxt, key=lambda w: w["start"])["gap_before"]
            how = f"audit stream_gap: {ok}; next window gap_before (on MQTT): {gap_flag}"
        reported.append({"start": round(b["start"], 2), "end": round(b["end"], 2), "why": b["why"],
                         "reported": ok, "how": how})
    unreported = [r for r in reported if not r["reported"]]

    # --- electrode-off / noise windows: interpreted or not?
    fault_windows = []
    for spec in (f for f in h.sim.faults if f.kind in ("electrode_off", "noise")):
        inside = [w for w in windows if w["start"] >= spec.start_s - TOL_S and w["end"] <= spec.start_s + spec.duration_s + TOL_S]
        fault_windows.append({"fault": f"{spec.kind}{':' + spec.electrode if spec.electrode else ''}@{spec.start_s:g}+{spec.duration_s:g}",
                              "windows_inside": len(inside),
                              "cannot_interpret": sum(w["level"] == "cannot_interpret" for w in inside),
                              "reasons": sorted({r for w in inside for r in w["reasons"]})[:4]})

    # --- rhythm alarms (issue 18): none may come from an electrode-off or noise fault. Each raised rhythm alarm
    # is placed in stream time (its audit time -> the last frame sent before it) and checked against the faults
    # (+10 s for the monitor's window). The joined record changes patient every 10 s, and those splices are
    # not a physiological stream: alarms raised away from any fault are listed, not failed.
    from edge_app.sinks.rhythm_watch import RHYTHM_ALARM_CODES
    rhythm_raised = []
    for e in audit:
        if e["kind"] == "alarm" and e["data"].get("state") == "raised" and e["data"].get("code") in RHYTHM_ALARM_CODES:
            k = int(np.searchsorted(sent_wall, _parse_time(e["time"]), side="right")) - 1
            rhythm_raised.append((e["data"]["code"], float(sent_end[k]) if k >= 0 else 0.0))
    fault_spans = [(f.start_s, f.start_s + (f.duration_s if f.duration_s is not None else float("inf")) + 10.0)
                   for f in h.sim.faults if f.kind in ("electrode_off", "noise")]
    rhythm_alarms = sorted({c for c, t in rhythm_raised if any(a <= t <= b for a, b in fault_spans)})
    rhythm_alarms_elsewhere = [[c, round(t, 1)] for c, t in rhythm_raised if not any(a <= t <= b for a, b in fault_spans)]

    fates: dict[str, int] = {}
    for f in frames:
        fates[f[3]] = fates.get(f[3], 0) + 1
    rep = {
        "front_end": {"stream_seconds": round(T, 1), "frames": fates, "starts": len(starts),
                      "disconnects": len(h.sim.disconnects), "events": h.sim.stats.events[-30:]},
        "daemon_runs": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in h.sup.runs],
        "daemon_ready_s": [round(r["ready"] - r["spawned"], 2) for r in h.sup.runs if r["ready"]],
        "results": {"in_store": len(store), "audited": len(run_of), "at_subscriber": len(got),
                    "cannot_interpret": sum(1 for w in windows if w["level"] == "cannot_interpret"),
                    "with_gap_before": sum(1 for w in windows if w["gap_before"])},
        "slots_10s": slots, "unaccounted_stretches_s": stretches,
        "window_placement_spread_s_max": round(max(spreads), 3) if spreads else None,
        "segments_anchored": f"{anchored} of {len(groups)}",
        "clock_lag_s_of_anchored_segments": [round(x, 3) for x in lags],
        "breaks": reported, "unreported_breaks": len(unreported),
        "cannot_interpret_without_reason": ci_no_reason,
        "fault_windows": fault_windows,
        "lost_results": lost, "audited_not_stored": audit_not_stored, "delivered_not_in_store": unknown,
        "duplicate_results": dup_results, "duplicate_windows": dup_windows, "msg_id_redeliveries": redeliveries,
        "alarms": {"audited": len(alarms_audit), "at_subscriber": len(alarms_got),
                   "lost": sorted(alarms_audit - alarms_got)},
        "rhythm_alarms": rhythm_alarms,
        "rhythm_alarms_away_from_faults": rhythm_alarms_elsewhere,
        "availability_messages": [m for _, m in avail],
        "subscriber_connects": h.sub.connects,
        "final_store": final_store, "uplink": status.get("uplink"), "counters": status.get("counters"),
        "memory": _rss_summary(h.sup),
    }
    problems = []
    if lost:
        problems.append(f"{len(lost)} result(s) in the store never reached the subscriber")
    if audit_not_stored:
        problems.append(f"{len(audit_not_stored)} audited result(s) missing from the store")
    if dup_results or dup_windows:
        problems.append(f"duplicates: {len(dup_results)} result(s) under two msg_ids, {len(dup_windows)} window(s) twice")
    if stretches:
        problems.append(f"unaccounted stream stretches {stretches}")
    if unreported:
        problems.append(f"{len(unreported)} break(s) not reported: {unreported}")
    if ci_no_reason:
        problems.append(f"{len(ci_no_reason)} 'cannot interpret' without a reason")
    if not got:
        problems.append("no result reached the subscriber")
    for d in rep["memory"]["per_daemon"]:
        g = d.get("growth_after_warmup_mb")
        if g is not None and d["seconds"] >= 90 and g > max(MEM_GROWTH_MB, 0.1 * d["rss_after_warmup_mb"]):
            problems.append(f"daemon pid {d['pid']} RSS grew {g} MB after warm-up in {d['seconds']} s")
    if rhythm_alarms:
        problems.append(f"rhythm alarm(s) raised during electrode-off/noise faults: {rhythm_alarms}")
    rep["problems"] = problems
    rep["ok"] = not problems
    return rep


# ----------------------------------------------------------------------------------------------- main
def _print_soak(r: dict[str, Any]) -> None:
    fe, res = r["front_end"], r["results"]
    print(f"soak {r['duration_s']:.0f} s: front end streamed {fe['stream_seconds']} s of real PTB-XL ECG; frames {fe['frames']}")
    print(f"  daemon runs: {len(r['daemon_runs'])} (READY in {r['daemon_ready_s']} s); "
          f"subscriber (re)connects {r['subscriber_connects']}; availability {r['availability_messages']}")
    print(f"  results: store {res['in_store']}, audited {res['audited']}, at subscriber {res['at_subscriber']} "
          f"(cannot_interpret {res['cannot_interpret']}, after a gap {res['with_gap_before']})")
    print(f"  10 s slots of the stream: {r['slots_10s']}  (window placement spread max {r['window_placement_spread_s_max']} s)")
    for b in r["breaks"]:
        print(f"  break {b['start']:8.2f}-{b['end']:8.2f} s {b['why']:18s} reported: {b['reported']} ({b['how']})")
    for f in r["fault_windows"]:
        print(f"  {f['fault']}: {f['windows_inside']} window(s) inside, {f['cannot_interpret']} cannot_interpret {f['reasons']}")
    print(f"  lost {len(r['lost_results'])}, duplicated results {len(r['duplicate_results'])}, windows twice "
          f"{len(r['duplicate_windows'])}, msg_id redeliveries (QoS 1) {r['msg_id_redeliveries']}; alarms "
          f"audited {r['alarms']['audited']}, at subscriber {r['alarms']['at_subscriber']}")
    for d in r["memory"]["per_daemon"]:
        print(f"  daemon pid {d['pid']}: {d['seconds']} s, RSS max {d['rss_max_mb']} MB, growth after warm-up "
              f"{d.get('growth_after_warmup_mb')} MB, slope {d.get('slope_mb_per_hour')} MB/h")
    print("  OK: nothing lost, duplicated or unaccounted for" if r["ok"] else f"  FAILED: {r['problems']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("soak", "latency", "rtf", "account"))
    ap.add_argument("workdir", nargs="?", help="account: a finished soak's work directory (redo the accounting)")
    ap.add_argument("--duration", type=float, default=None,
                    help="wall seconds (defaults: soak 150 = one fault cycle, latency 60, rtf 45)")
    ap.add_argument("--stride", type=float, default=5.0, help="windows.stride_s of the daemon (default 5)")
    ap.add_argument("--kill-every", type=int, default=1, help="soak: SIGKILL the daemon in every N-th 150 s cycle "
                    "(default 1 = every cycle; e.g. 6 for an hour-long run with 10-minute daemon lifetimes)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args(argv)
    a.duration = a.duration or {"soak": 150.0, "latency": 60.0, "rtf": 45.0, "account": 0.0}[a.mode]
    if a.mode == "account":
        raw, status, final = load_raw(Path(a.workdir))
        out = account(raw, status, final)
        out.update(mode="soak", duration_s=0.0, workdir=a.workdir)
        a.mode = "soak"
    else:
        out = {"soak": mode_soak, "latency": mode_latency, "rtf": mode_rtf}[a.mode](a)
    if a.json:
        print(json.dumps(out, default=str))
    elif a.mode == "soak":
        _print_soak(out)
    else:
        print(json.dumps(out, indent=1, default=str))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
