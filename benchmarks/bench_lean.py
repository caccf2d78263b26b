"""Issue 17 (a lean device), measured on the previous version and on this one in the same run.

"before" is the code at --before (default: the commit before the issue-17 work), unpacked with `git archive`
into a temp directory (the checkout is not touched); "after" is the working tree. Each figure is measured
in its own fresh Python process with that tree first on sys.path, interleaved before/after, so both see
the same machine load. Figures:

- footprint: resident memory (RSS) of a fresh Python after importing AND exercising, cumulatively, what
  the daemon needs: numpy; the signal chain (gate, resampler, model input, beats on a 10 s window); the
  LiteRT model (load + one inference); the result store (one result with its WFDB strip); MQTT client,
  bedside display and daemon modules. Also which heavy libraries ended up loaded.
- replay: `ecg-edge replay` of many 10 s PTB-XL 500 Hz records (the 42 fixture records, --repeat times):
  (a) in-process, after model load and one warm-up record: CPU seconds -> multiple of real time on one
  core, and where the time goes (the results' own stage timings; "rest" = reading the record,
  resampling, windowing, triage, bookkeeping); (b) the real CLI as a subprocess: wall time including
  process start, and peak RSS (the kernel's ru_maxrss of that process).
- stream: the daemon's analysis chain end to end in-process (10-sample blocks = one wire frame each,
  through Pipeline.process_block: assembler, streaming resampler, gate, beats, model, explanation,
  triage) over the 42 records joined (420 s): CPU seconds -> multiple of real time, stage medians.
- daemon (after only unless --daemon-before): the real daemon (`python -m edge_app.cli run`) with MQTT
  (a real mosquitto) and the bedside display on, fed by the pty front-end simulator at 500 Hz real time:
  spawn -> READY=1, cable connected (simulator started after READY) -> first result stored, RSS max.

    python benchmarks/bench_lean.py [--repeat 5] [--daemon-seconds 40] [--before REF] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The last commit before the issue-17 work (signal chain, storage, replay): "before" in the tables.
BEFORE_REF = "34ed6da"
RECORDS = sorted(str(p.with_suffix("")) for p in (ROOT / "tests/fixtures/ptbxl_official_sample/records500").glob("*/*_hr.hea"))


def materialise(ref: str) -> Path:
    """The tree at `ref`, unpacked once into /tmp (git archive: the checkout and its index are untouched)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = Path(tempfile.gettempdir()) / f"ecg-edge-before-{sha}"
    if not (dest / "edge_app").exists():
        dest.mkdir(parents=True, exist_ok=True)
        arc = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arc, check=True)
    return dest


def run_py(tree: Path, code: str, timeout: float = 900) -> dict[str, Any]:
    """Run `code` in a fresh Python with `tree` first on sys.path (cwd = tree); it prints one JSON line."""
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tree), capture_output=True, text=True,
                       timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark step failed in {tree}: {p.stderr[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ footprint
_FOOT_STEPS = [
    ("python + numpy", "import numpy as np"),
    ("+ signal chain (gate, resampler, model input, beats)", """
        from edge_app.signal_chain.quality import ecg_quality
        from edge_app.signal_chain.conditioning import StreamingResampler
        from edge_app.signal_chain.contract import make_model_input
        from edge_app.signal_chain.beats import ecg_measure
        t = np.arange(5000) / 500.0
        x = np.outer(np.sin(2 * np.pi * 1.2 * t) * 500, np.ones(12)) + np.random.default_rng(0).normal(0, 5, (5000, 12))
        ecg_quality(x, 500.0, mains_hz=50); ecg_measure(x, 500.0)
        rs = StreamingResampler(500.0); y = rs.process(x); make_model_input(np.vstack([y, rs.flush()])[:1000])"""),
    ("+ LiteRT model (load, one inference)", """
        from edge_app.config import load_config
        from edge_app.inference import load_model
        cfg = load_config(None)
        m = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
        m.predict(np.zeros((1000, 12)), None, None)"""),
    ("+ result store (a result with its WFDB strip)", """
        import tempfile
        from edge_app.storage import ResultStore
        s = ResultStore(tempfile.mkdtemp())
        s.put({"id": "r1", "time": "2026-12-04T10:00:00+00:00"}, x, 500.0); s.strip("r1")"""),
    ("+ MQTT client, display, daemon modules", """
        import paho.mqtt.client, edge_app.daemon, edge_app.display, edge_app.uplink.service"""),
]


def footprint(tree: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    code = "import sys, json, resource\n"
    for label, step in _FOOT_STEPS:
        code += textwrap.dedent(step).strip("\n") + "\n"
        probe = code + ("import psutil\nprint(json.dumps({'rss_mb': psutil.Process().memory_info().rss / 2**20, "
                        "'heavy': sorted(m for m in ('scipy.signal', 'scipy.linalg', 'wfdb', 'pandas') "
                        "if m in sys.modules)}))\n")
        out[label] = run_py(tree, probe)
    return out


# ------------------------------------------------------------------------------------------ replay
_STAGE_PRELUDE = """
import time as _t
import edge_app.pipeline as _pl
import edge_app.windowing as _wn
STAGE = {}
def _timed(name, fn):
    def w(*a, **k):
        c = _t.process_time()
        try:
            return fn(*a, **k)
        finally:
            STAGE[name] = STAGE.get(name, 0.0) + _t.process_time() - c
    return w
_pl.read_record = _timed("read record", _pl.read_record)
for _n in ("_quality", "_call_quality"):
    if hasattr(_pl, _n):
        setattr(_pl, _n, _timed("quality gate", getattr(_pl, _n)))
_pl.Pipeline._heart_rate = _timed("beats (heart rate)", _pl.Pipeline._heart_rate)
_wn.WindowAssembler.push = _timed("windows + resampler", _wn.WindowAssembler.push)
_wn.WindowAssembler.flush = _timed("windows + resampler", _wn.WindowAssembler.flush)
def _wrap_model(m):
    m.predict = _timed("model", m.predict)
    m.lead_importance = _timed("explanation (lead occlusion)", m.lead_importance)
    return m
"""

_REPLAY_CODE = _STAGE_PRELUDE + """
import json, sys, time
def peak_rss_mb():
    # VmHWM: this process's own high-water mark (ru_maxrss would include the parent's memory at fork/exec)
    for ln in open("/proc/self/status"):
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) / 1024

import numpy as np
from edge_app.config import load_config
from edge_app.inference import load_model
from edge_app.pipeline import PipelineSettings, analyse_record
paths = %(paths)r
cfg = load_config(None)
model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
model = _wrap_model(model)
settings = PipelineSettings.from_config(cfg)
try:
    from edge_app.replay import replay_records
    def run(ps):
        return [r for item in replay_records(ps, model, settings) for r in item.results]
    how = "edge_app.replay.replay_records"
except ImportError:
    def run(ps):
        return [r for p in ps for r in analyse_record(p, model=model, settings=settings, config=cfg)]
    how = "pipeline.analyse_record per record"
run(paths[:1])
STAGE.clear()
c0, w0 = time.process_time(), time.perf_counter()
res = run(paths)
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
st = {k: 1000 * v for k, v in STAGE.items()}
st["rest (triage, explanation maps, results, bookkeeping)"] = 1000 * cpu - sum(st.values())
sig = 10.0 * len(paths)
print(json.dumps({"how": how, "records": len(paths), "windows": len(res), "signal_s": sig, "cpu_s": cpu, "wall_s": wall,
                  "x_real_time_cpu": sig / cpu, "ms_per_record_cpu": 1000 * cpu / len(paths),
                  "stage_ms_per_record": {k: v / len(paths) for k, v in st.items()},
                  "peak_rss_mb": peak_rss_mb()}))
"""


def replay_inprocess(tree: Path, paths: list[str]) -> dict[str, Any]:
    return run_py(tree, _REPLAY_CODE % {"paths": paths})


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's own RSS high-water mark (VmHWM, of its address space after exec), or None once gone.
    Why not wait4's ru_maxrss: Linux folds the pre-exec address space (the forking parent's) into it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1]) / 1024
    except OSError:
        return None
    return None


def replay_cli_peak(tree: Path, paths: list[str]) -> dict[str, Any]:
    """The CLI's wall time (with process start) and peak RSS (VmHWM polled every 20 ms until it exits;
    the high-water mark only grows, so the last reading is the peak up to ~20 ms before the end)."""
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    t0 = time.perf_counter()
    peak = 0.0
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as errf:
        p = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "replay", *paths, "--json"], cwd=str(tree),
                             stdout=devnull, stderr=errf, env=env)
        while p.poll() is None:
            hwm = _vm_hwm_mb(p.pid)
            peak = max(peak, hwm or 0.0)
            time.sleep(0.02)
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"replay CLI failed (exit {p.returncode}): {err[-1500:]}")
    return {"records": len(paths), "wall_s_with_start": wall, "peak_rss_mb": peak}


# ------------------------------------------------------------------------------------------ stream
_STREAM_CODE = _STAGE_PRELUDE + """
import json, time, statistics
import numpy as np
from edge_app.config import load_config
from edge_app.inference import load_model
from edge_app.pipeline import Pipeline, PipelineSettings, read_record, record_blocks
paths = %(paths)r
cfg = load_config(None)
model = _wrap_model(load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads")))
settings = PipelineSettings.from_config(cfg)
x = np.vstack([read_record(p)[0] for p in paths])
blocks = record_blocks(x, 500.0, block_s=0.02)          # 10 samples = one wire frame at 500 Hz
warm = Pipeline(model, settings, "bench")
for b in record_blocks(x[:6000], 500.0, block_s=0.02):
    warm.process_block(b)
pipe = Pipeline(model, settings, "bench")
STAGE.clear()
c0, w0 = time.process_time(), time.perf_counter()
res = [a.result for b in blocks for a in pipe.process_block(b)]
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
st = {k: 1000 * v / len(res) for k, v in STAGE.items()}
st["rest (block handling, triage, explanation maps, results)"] = 1000 * cpu / len(res) - sum(st.values())
sig = len(x) / 500.0
print(json.dumps({"signal_s": sig, "blocks": len(blocks), "windows": len(res), "cpu_s": cpu, "wall_s": wall,
                  "x_real_time_cpu": sig / cpu, "cpu_ms_per_window_by_stage": st}))
"""


def stream(tree: Path) -> dict[str, Any]:
    return run_py(tree, _STREAM_CODE % {"paths": RECORDS})


# ------------------------------------------------------------------------------------------ daemon
def daemon(tree: Path, seconds: float) -> dict[str, Any]:
    """The real daemon with MQTT and display on, 500 Hz real time from the pty simulator (current tree's)."""
    import psutil
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from mosquitto_broker import MosquittoBroker, free_port

    from firmware_bridge.simulator import FrontEndSimulator
    tmp = Path(tempfile.mkdtemp(prefix="bench-lean-"))
    broker = MosquittoBroker(tmp / "broker").start()
    cfg = tmp / "config.toml"
    cfg.write_text(f'[device]\nid = "bench"\n[frontend]\nport = "{tmp / "frontend"}"\nfs = 500\n'
                   f'[storage]\nstate_dir = "{tmp / "state"}"\n[logging]\nlevel = "WARNING"\n'
                   f'[mqtt]\nenabled = true\nport = {broker.port}\n'
                   f'[display]\nenabled = true\nport = {free_port()}\n')
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(tmp / "notify.sock"))
    ns.settimeout(120)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify.sock"), PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    t_spawn = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)], cwd=str(tree),
                            stdout=open(tmp / "daemon.log", "wb"), stderr=subprocess.STDOUT, env=env)
    sim = None
    try:
        while "READY=1" not in ns.recv(4096).decode().split("\n"):
            pass
        t_ready = time.monotonic() - t_spawn
        ns.setblocking(False)
        p = psutil.Process(proc.pid)
        rss_idle = p.memory_info().rss
        sim = FrontEndSimulator(RECORDS[0], fs=500, speed=1.0, loop=True, link_path=str(tmp / "frontend"))
        t_connect = time.monotonic()
        sim.start()
        first = None
        rss: list[int] = []
        results_dir = tmp / "state" / "store" / "results"
        while time.monotonic() - t_connect < seconds:
            rss.append(p.memory_info().rss)
            if first is None and any(results_dir.glob("*/*.json")):
                first = time.monotonic() - t_connect
            try:
                while True:
                    ns.recv(4096)
            except (BlockingIOError, OSError):
                pass
            time.sleep(0.1 if first is None else 1.0)
        n_results = len(list(results_dir.glob("*/*.json")))
        return {"startup_to_ready_s": round(t_ready, 2), "cable_connect_to_first_result_s":
                None if first is None else round(first, 2), "rss_mb_idle_after_ready": round(rss_idle / 2 ** 20, 1),
                "rss_mb_max_streaming": round(max(rss) / 2 ** 20, 1), "seconds": seconds, "results": n_results,
                "mqtt": True, "display": True}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if sim is not None:
            sim.stop()
        broker.stop()
        ns.close()


# ------------------------------------------------------------------------------------------ main
def _ratio(before: float | None, after: float | None) -> float | None:
    return None if not before or after is None else round(after / before, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE_REF, help=f"git ref of the previous version (default {BEFORE_REF})")
    ap.add_argument("--repeat", type=int, default=5, help="replay the 42 records this many times (default 5 = 210)")
    ap.add_argument("--daemon-seconds", type=float, default=40.0, help="real-time streaming per daemon run (0: skip)")
    ap.add_argument("--daemon-before", action="store_true", help="also run the previous version's daemon")
    ap.add_argument("--only", default="footprint,replay,stream,daemon")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    trees = {"before": materialise(a.before), "after": ROOT}
    paths = RECORDS * a.repeat
    out: dict[str, Any] = {"before_ref": a.before, "records": len(paths), "load_avg_1m_before": os.getloadavg()[0]}
    for name, fn in (("footprint", footprint), ("replay", lambda t: replay_inprocess(t, paths)),
                     ("replay_cli", lambda t: replay_cli_peak(t, paths)), ("stream", stream)):
        if name.split("_")[0] not in only:
            continue
        out[name] = {}
        for which in ("before", "after"):
            print(f"[{time.strftime('%H:%M:%S')}] {name} {which} ...", file=sys.stderr, flush=True)
            try:
                out[name][which] = fn(trees[which])
            except Exception as e:  # noqa: BLE001 - a failed part is reported, not invented
                out[name][which] = {"error": str(e)[-800:]}
    if "daemon" in only and a.daemon_seconds > 0:
        out["daemon"] = {}
        for which in (("before", "after") if a.daemon_before else ("after",)):
            print(f"[{time.strftime('%H:%M:%S')}] daemon {which} ...", file=sys.stderr, flush=True)
            try:
                out["daemon"][which] = daemon(trees[which], a.daemon_seconds)
            except Exception as e:  # noqa: BLE001
                out["daemon"][which] = {"error": str(e)[-800:]}
    out["load_avg_1m_after"] = os.getloadavg()[0]
    out["ratios_after_over_before"] = {
        "replay_x_real_time": _ratio(out.get("replay", {}).get("before", {}).get("x_real_time_cpu"),
                                     out.get("replay", {}).get("after", {}).get("x_real_time_cpu")),
        "replay_cli_peak_rss": _ratio(out.get("replay_cli", {}).get("before", {}).get("peak_rss_mb"),
                                      out.get("replay_cli", {}).get("after", {}).get("peak_rss_mb")),
        "stream_x_real_time": _ratio(out.get("stream", {}).get("before", {}).get("x_real_time_cpu"),
                                     out.get("stream", {}).get("after", {}).get("x_real_time_cpu")),
    }
    fp = out.get("footprint", {})
    if fp.get("before") and fp.get("after") and "error" not in fp["before"] and "error" not in fp["after"]:
        last = _FOOT_STEPS[-1][0]
        out["ratios_after_over_before"]["daemon_modules_rss"] = _ratio(fp["before"][last]["rss_mb"],
                                                                       fp["after"][last]["rss_mb"])
    if a.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
