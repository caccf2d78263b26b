"""Regenerate benchmarks/results.json and benchmarks/RESULTS.md: every figure in one table, one command.

    python benchmarks/run_all.py            # full run (~40 min on 2 shared cores)
    python benchmarks/run_all.py --quick    # short versions of everything (development; figures noisier)
    python benchmarks/run_all.py --only inference,soak    # some parts (others are kept from results.json)

Runs each benchmark as its own subprocess (their own scripts, their --json output; bench_signal_chain.py
prints text only and is parsed), then the model's val metrics from quantized_models/manifest.json, and records
the machine (CPU model, cores, RAM, OS, Python, package versions), the load average before/after and the date.
A benchmark that fails is recorded with its error and the table says "not measured"; nothing is made up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "RESULTS.md"
PY = sys.executable

#: name -> (command, timeout s, quick command). Commands are argv lists relative to the repo root.
BENCHES: dict[str, tuple[list[str], float, list[str]]] = {
    "inference": (["benchmarks/bench_inference.py", "--n", "200", "--rounds", "3", "--json"], 1800,
                  ["benchmarks/bench_inference.py", "--n", "40", "--rounds", "1", "--json"]),
    "pipeline_rtf": (["benchmarks/soak.py", "rtf", "--duration", "60", "--json"], 600,
                     ["benchmarks/soak.py", "rtf", "--duration", "20", "--json"]),
    "pipeline_realtime": (["benchmarks/soak.py", "latency", "--duration", "120", "--json"], 600,
                          ["benchmarks/soak.py", "latency", "--duration", "30", "--json"]),
    "daemon": (["benchmarks/bench_daemon.py", "--duration", "30", "--json"], 600,
               ["benchmarks/bench_daemon.py", "--duration", "15", "--json"]),
    "decoder": (["benchmarks/bench_decoder.py", "--json"], 600,
                ["benchmarks/bench_decoder.py", "--seconds-of-ecg", "120", "--repeat", "2", "--json"]),
    "signal_chain": (["benchmarks/bench_signal_chain.py"], 600,
                     ["benchmarks/bench_signal_chain.py", "--repeat", "1"]),
    "outbox": (["benchmarks/bench_outbox.py", "--json"], 900,
               ["benchmarks/bench_outbox.py", "--results", "300", "--drain", "1000", "--json"]),
    "fleet": (["benchmarks/bench_fleet.py", "--step-seconds", "15", "--max-seconds", "240", "--json"], 900,
              ["benchmarks/bench_fleet.py", "--steps", "100,250", "--step-seconds", "10", "--json"]),
    "display": (["benchmarks/bench_display.py", "--seconds", "15", "--json"], 600,
                ["benchmarks/bench_display.py", "--seconds", "8", "--json"]),
    "soak": (["benchmarks/soak.py", "soak", "--duration", "300", "--json"], 1200,
             ["benchmarks/soak.py", "soak", "--duration", "150", "--json"]),
    # issue 18: rhythm detectors, EC57-style, on the MIT-BIH development records (../shared/data/mitdb_dev)
    "rhythm": (["-m", "training.rhythm_eval", "--json"], 900, ["-m", "training.rhythm_eval", "--json"]),
    # issue 17: the previous version (git archive of bench_lean.BEFORE_REF) and this one, side by side
    "lean": (["benchmarks/bench_lean.py", "--repeat", "5", "--daemon-seconds", "40", "--daemon-before", "--json"], 1800,
             ["benchmarks/bench_lean.py", "--repeat", "1", "--daemon-seconds", "20", "--json"]),
    "strip_upload": (["benchmarks/bench_strip_upload.py", "--json"], 900,
                     ["benchmarks/bench_strip_upload.py", "--drain", "60", "--enqueue", "30", "--repeat", "5", "--json"]),
    # the cloud station (cloud_dashboard/, H12a's scripts)
    "cloud_ingest": (["benchmarks/bench_cloud_ingest.py", "--bridge", "--json"], 1800,
                     ["benchmarks/bench_cloud_ingest.py", "--results", "100", "--workers", "1,2", "--db", "sqlite",
                      "--json"]),
    "cloud_backlog": (["benchmarks/bench_cloud_backlog.py", "--json"], 1800,
                      ["benchmarks/bench_cloud_backlog.py", "--devices", "100", "--json"]),
    "cloud_latency": (["benchmarks/bench_cloud_latency.py", "--json"], 900,
                      ["benchmarks/bench_cloud_latency.py", "--results", "30", "--json"]),
    "cloud_pages": (["benchmarks/bench_cloud_pages.py", "--json"], 2400,
                    ["benchmarks/bench_cloud_pages.py", "--results", "5000", "--db", "sqlite", "--repeat", "5",
                     "--json"]),
    # not in the default run (30 min); `--only soak_long` measures it, later runs keep its figures
    "soak_long": (["benchmarks/soak.py", "soak", "--duration", "1800", "--kill-every", "6", "--json"], 2700,
                  ["benchmarks/soak.py", "soak", "--duration", "600", "--kill-every", "4", "--json"]),
}
DEFAULT = [n for n in BENCHES if n != "soak_long"]


def _pkg_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for p in ("numpy", "scipy", "ai-edge-litert", "tflite-runtime", "tensorflow", "keras", "paho-mqtt", "pyserial",
              "wfdb", "psutil"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    try:
        mq = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, timeout=10)
        m = re.search(r"mosquitto version (\S+)", mq.stdout + mq.stderr)
        if m:
            out["mosquitto"] = m.group(1)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.lower().startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for ln in Path("/etc/os-release").read_text().splitlines():
            if ln.startswith("PRETTY_NAME="):
                os_name = f"{ln.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    try:
        import psutil
        ram = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except ImportError:
        ram = None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    return {"cpu_model": cpu, "cores": os.cpu_count(), "ram_gb": ram, "os": os_name, "arch": platform.machine(),
            "python": platform.python_version(), "packages": _pkg_versions(), "git_commit": commit,
            "note": "shared development VM: other jobs were running; see load averages"}


def parse_signal_chain(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": {}}
    for ln in text.splitlines():
        m = re.match(r"\s+(\w+)\s+([\d.]+) CPU s\s+->\s+(\d+) s of signal per CPU second", ln)
        if m:
            out["stages"][m.group(1)] = {"cpu_s": float(m.group(2)), "signal_s_per_cpu_s": int(m.group(3))}
        if ln.startswith("signal:"):
            out["input"] = ln
    if "chain" not in out["stages"]:
        raise ValueError("could not parse bench_signal_chain output")
    return out


def _last_json(text: str) -> dict[str, Any]:
    """The benchmark's JSON object: all of stdout from the first '{', else the last line that is one."""
    start = text.find("{")
    if start >= 0:
        try:
            return json.loads(text[start:])
        except ValueError:
            pass
    for ln in reversed(text.strip().splitlines()):
        ln = ln.strip()
        if ln.startswith("{"):
            try:
                return json.loads(ln)
            except ValueError:
                continue
    raise ValueError("no JSON on stdout")


def run_bench(name: str, quick: bool) -> dict[str, Any]:
    full, timeout, q = BENCHES[name]
    argv = q if quick else full
    if argv[0] != "-m" and not (ROOT / argv[0]).exists():
        return {"ok": False, "error": f"{argv[0]} not present", "command": " ".join(argv)}
    t0 = time.time()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: python {' '.join(argv)}  (load {load0:.1f})", flush=True)
    try:
        p = subprocess.run([PY] + argv, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s", "command": "python " + " ".join(argv)}
    rec: dict[str, Any] = {"command": "python " + " ".join(argv), "seconds": round(time.time() - t0, 1),
                           "measured_utc": started,
                           "load_avg_1m_before": round(load0, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
                           "exit_code": p.returncode}
    try:
        if name == "signal_chain":
            data = parse_signal_chain(p.stdout)
        else:
            data = _last_json(p.stdout)
        rec["data"] = data
        rec["ok"] = p.returncode == 0 or (name == "soak" and "ok" in data)
    except ValueError as e:
        rec.update(ok=False, error=f"{e}; exit {p.returncode}; stderr: {p.stderr[-1500:]}")
    print(f"    -> {'ok' if rec.get('ok') else 'FAILED: ' + rec.get('error', '')[:300]} in {rec['seconds']} s", flush=True)
    return rec


# ------------------------------------------------------------------------------------------ the table
def _g(d: Any, *path: Any, default: Any = None) -> Any:
    for k in path:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return default
    return d


def _f(v: Any, fmt: str = "{:.2f}", unit: str = "") -> str:
    if v is None:
        return "not measured"
    if isinstance(v, (int, float)):
        return fmt.format(v) + unit
    return str(v)


def build_rows(res: dict[str, Any]) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """(area, figure, value, comparison / note) rows and the plain 'where we are slower/heavier' sentences."""
    rows: list[tuple[str, str, str, str]] = []
    worse: list[str] = []
    b = res["benchmarks"]

    # --- model (val metrics from the manifest)
    m = res.get("model", {})
    mv = m.get("metrics_val", {})
    if mv:
        i8, fl = mv.get("int8", {}), mv.get("float", {})
        rows.append(("model (val, PTB-XL fold 9)", f"macro AUC, int8 shipped (n={mv.get('n')})",
                     _f(i8.get("macro_auc"), "{:.4f}"), f"float Keras {_f(fl.get('macro_auc'), '{:.4f}')} "
                     f"(diff {_f(_g(mv, 'int8_vs_float', 'macro_auc_diff'), '{:+.4f}')})"))
        for c, d in i8.get("per_class", {}).items():
            rows.append(("model (val, PTB-XL fold 9)", f"{c}: AUC / sensitivity / specificity @ threshold",
                         f"{d['auc']:.3f} / {d['sensitivity']:.3f} / {d['specificity']:.3f} @ {d['threshold']:.3f}",
                         f"n positive {d.get('n_positive')}" + ("; threshold chosen for sensitivity 0.90 (MI)"
                                                                 if c == "MI" else "; Youden threshold")))
        if fl.get("macro_auc") is not None and i8.get("macro_auc") is not None and i8["macro_auc"] < fl["macro_auc"]:
            worse.append(f"The int8 model's val macro AUC ({i8['macro_auc']:.4f}) is below the float model's "
                         f"({fl['macro_auc']:.4f}) by {fl['macro_auc'] - i8['macro_auc']:.4f}.")

    # --- inference side by side
    inf = _g(b, "inference", "data")
    if inf:
        be = inf["backends"]
        ref = be["int8-litert-1t"]
        label = {"int8-litert-1t": "int8 shipped, LiteRT, 1 thread (the daemon's setting)",
                 "int8-litert-2t": "int8 shipped, LiteRT, 2 threads", "float32-litert": "float32 TFLite, LiteRT, 1 thread",
                 "keras-tf": "float Keras on full TensorFlow, `model(x)`"}
        for k, d in be.items():
            q = d["ratios_vs_int8_1t"]
            rows.append(("inference, batch 1", label[k],
                         f"median {d['latency_ms_median']:.3f} ms, p99 {d['latency_ms_p99']:.2f} ms; "
                         f"{d['throughput_per_s']:.0f} windows/s; CPU {d['cpu_ms_per_window']:.3f} ms/window; "
                         f"RSS {d['rss_mb']:.0f} MB ({d['rss_above_python_mb']:+.0f} over bare Python); "
                         f"start {d['start_s']:.2f} s; file {d['model_bytes'] / 1024:.0f} KB",
                         "reference" if k == "int8-litert-1t" else
                         f"median x{q['latency_median']:.2f}, p99 x{q['latency_p99']:.2f}, CPU x{q['cpu_per_window']:.2f}, "
                         f"RSS(+) x{q['rss_above_python']:.2f}, start x{q['start']:.2f}, file x{q['model_bytes']:.2f}"))
        k = be.get("keras-tf", {})
        if k and k.get("predict_latency_ms_median"):
            rows.append(("inference, batch 1", "float Keras, `model.predict(x)` per window (notebook way) / "
                         "batched `predict` (32)",
                         f"median {k['predict_latency_ms_median']:.1f} ms, p99 {k['predict_latency_ms_p99']:.1f} ms / "
                         f"{k['batched_predict_throughput_per_s']:.0f} windows/s",
                         f"median x{k['predict_latency_ms_median'] / ref['latency_ms_median']:.0f}; batched throughput "
                         f"x{k['batched_predict_throughput_per_s'] / ref['throughput_per_s']:.2f}"))
        trained = inf.get("float_weights_trained", True)
        if not trained:
            rows.append(("inference, batch 1", "float models used", "same architecture, UNTRAINED weights",
                         inf.get("float_source", "")))
        else:
            rows.append(("inference, batch 1", "agreement with the float Keras model: max (mean) abs probability difference",
                         f"int8 {ref['max_abs_prob_diff_vs_keras']} ({ref['mean_abs_prob_diff_vs_keras']}); float32 TFLite "
                         f"{be['float32-litert']['max_abs_prob_diff_vs_keras']}", f"{inf['n']} real val windows; "
                         f"float model: {inf.get('float_run_dir')}"))
        # (key, name, unit, decimals, smallest difference that counts)
        figs = (("latency_ms_median", "median latency", "ms", 3, 0.005), ("latency_ms_p99", "p99 latency", "ms", 2, 0.05),
                ("cpu_ms_per_window", "CPU per window", "ms", 3, 0.005),
                ("rss_above_python_mb", "memory over bare Python", "MB", 1, 1.0),
                ("start_s", "start time", "s", 2, 0.05), ("model_bytes", "model file", "bytes", 0, 1024))
        for kk, d in be.items():
            if kk == "int8-litert-1t":
                continue
            better = [f"{n} {d[f]:.{nd}f} vs {ref[f]:.{nd}f} {u}" for f, n, u, nd, eps in figs
                      if d[f] < ref[f] * 0.97 and ref[f] - d[f] >= eps]
            poorer = [n for f, n, u, nd, eps in figs if d[f] > ref[f] * 1.03 and d[f] - ref[f] >= eps]
            if better:
                worse.append(f"Shipped int8 (LiteRT, 1 thread) is beaten by {label[kk]} on " + "; ".join(better)
                             + (f" (that alternative is worse on {', '.join(poorer)})" if poorer else "")
                             + (". Sub-millisecond tails move from run to run on this shared machine" if any(
                                 "p99" in x for x in better) else "") + ".")
        if ref["latency_ms_p99"] > 10 * ref["latency_ms_median"]:
            worse.append(f"The int8 p99 latency ({ref['latency_ms_p99']:.2f} ms) is far above its median "
                         f"({ref['latency_ms_median']:.3f} ms): on this shared 2-core machine the tail is the scheduler's "
                         "(other jobs), not the model's; p99 ratios between backends are noisy for the same reason.")
        if trained and ref["max_abs_prob_diff_vs_keras"] > 0.01:
            worse.append(f"Quantization changes outputs: the int8 probabilities differ from the float Keras model by up to "
                         f"{ref['max_abs_prob_diff_vs_keras']} (mean {ref['mean_abs_prob_diff_vs_keras']}) on these windows.")

    # --- pipeline
    rtf = _g(b, "pipeline_rtf", "data")
    if rtf:
        tm = rtf.get("median_timings_ms_per_window", {})
        rows.append(("pipeline (whole chain)", "real-time factor, real PTB-XL replayed as fast as possible, end to end",
                     f"{rtf['real_time_factor']:.1f}x real time", f"{rtf['ecg_seconds_per_daemon_cpu_second']} s of "
                     f"ECG per daemon CPU second (daemon at {rtf['daemon_cpu_pct_one_core']:.0f} % of a core"
                     + (": CPU-bound" if rtf['daemon_cpu_pct_one_core'] >= 85 else
                        ": the rest of the time it waits, for fsync'd writes or the shared CPUs") +
                     f"); {rtf['windows']} windows, stride {rtf['stride_s']:g} s; decode -> condition -> "
                     "quality -> model -> explanation -> triage -> store -> audit -> outbox -> MQTT"))
        if tm:
            rows.append(("pipeline (whole chain)", "per-window analysis, median (quality / beats / model / explanation)",
                         f"{tm.get('analysis_ms')} ms ({tm.get('quality_ms')} / {tm.get('beats_ms')} / {tm.get('model_ms')} / "
                         f"{tm.get('explain_ms')} ms)", f"analysis alone would run {rtf.get('analysis_only_real_time_factor')}x "
                         "real time; the model is the smallest part"))
            if rtf.get("analysis_only_real_time_factor") and rtf["real_time_factor"] < 0.8 * rtf["analysis_only_real_time_factor"]:
                worse.append(f"End to end the chain runs {rtf['real_time_factor']:.0f}x real time, not the "
                             f"{rtf['analysis_only_real_time_factor']:.0f}x its per-window analysis alone allows: the "
                             "per-block work (serial read, wire decode, resampling, queueing) and durable storage of every "
                             "result with its raw strip (result store, audit log, outbox, each fsync'd) take the rest. "
                             "Irrelevant at the real 500 Hz rate, but it bounds how fast a backlog is replayed.")
    rt = _g(b, "pipeline_realtime", "data")
    if rt:
        L = rt["latency_last_sample_to_subscriber_ms"]
        rows.append(("pipeline (real time 500 Hz)", "last sample (front end) -> MQTT message at a subscriber",
                     f"median {_f(L['median'], '{:.0f}')} ms, p99 {_f(L['p99'], '{:.0f}')} ms",
                     f"{rt['results']} windows; of which: window complete (resampler look-ahead) "
                     f"{_f(rt.get('emitted_to_window_complete_ms_median'), '{:.0f}')} ms, then analysed after "
                     f"{_f(rt['daemon_last_sample_to_analysed_ms_median'], '{:.0f}')} ms, stored+audited+queued after "
                     f"{_f(_g(rt, 'daemon_last_sample_to_stored_and_queued_ms', 'median'), '{:.0f}')} ms (medians)"))
        rows.append(("pipeline (real time 500 Hz)", "daemon CPU share / RSS while streaming",
                     f"{rt['daemon_cpu_pct_one_core']:.1f} % of one core / {_f(_g(rt, 'daemon_rss_mb', 'max'), '{:.0f}')} MB",
                     f"{rt['seconds']:.0f} s, MQTT on"))
        fp = rt.get("import_footprint_rss_mb") or {}
        if fp:
            rows.append(("pipeline (real time 500 Hz)", "where the daemon's memory goes: RSS of a fresh Python after imports",
                         ", ".join(f"{k} {v:.0f} MB" for k, v in fp.items()), "cumulative; separate processes"))
            sp = fp.get("+scipy.signal", 0) - fp.get("python+numpy", 0)
            wf = fp.get("+wfdb (pandas)", 0) - fp.get("+scipy.signal", 0)
            li = fp.get("+LiteRT interpreter", 0) - fp.get("+wfdb (pandas)", 0)
            lean_heavy = _g(b, "lean", "data", "footprint", "after")
            lean_free = isinstance(lean_heavy, dict) and lean_heavy and all(
                not v.get("heavy") for v in lean_heavy.values() if isinstance(v, dict))
            if lean_free:                 # issue 17: the daemon no longer imports them (lean device rows)
                rows[-1] = rows[-1][:3] + ("cumulative; separate processes. What these libraries would cost: the "
                                           "daemon no longer imports scipy.signal, wfdb or pandas (lean device rows)",)
            elif sp + wf > 4 * max(li, 1):
                worse.append(f"The daemon's memory is mostly libraries, not the model: scipy.signal adds {sp:.0f} MB and "
                             f"wfdb (with pandas, for the WFDB strip writer) {wf:.0f} MB, against {li:.0f} MB for the LiteRT "
                             f"interpreter; the daemon runs at ~{_f(_g(rt, 'daemon_rss_mb', 'max'), '{:.0f}')} MB, where the "
                             "int8 model alone in LiteRT needs "
                             f"{_f(_g(b, 'inference', 'data', 'backends', 'int8-litert-1t', 'rss_mb'), '{:.0f}', ' MB')} "
                             "of process (bench_inference).")
    dm = _g(b, "daemon", "data")
    if dm:
        rows.append(("daemon", "start to READY=1 (imports, model verify + load, warm-up)",
                     f"{dm['startup_to_ready_s']:.2f} s", "bench_daemon.py (systemd notify socket)"))

    # --- parts
    dec = _g(b, "decoder", "data")
    if dec:
        rows.append(("wire decoder", "frames decoded -> 12 leads in uV", f"{dec['multiple_of_real_time_500hz']:.0f}x real time",
                     f"{dec['frames_per_s']:,} frames/s, {dec['mbytes_per_s']} MB/s (bench_decoder.py)"))
    sc = _g(b, "signal_chain", "data")
    if sc:
        st = sc["stages"]
        rows.append(("signal chain", "conditioning + quality + beats + model input",
                     f"{st['chain']['signal_s_per_cpu_s']}x real time per CPU",
                     ", ".join(f"{k} {v['signal_s_per_cpu_s']}x" for k, v in st.items() if k != "chain")
                     + " (bench_signal_chain.py)"))
    ob = _g(b, "outbox", "data")
    if ob:
        p, dr = ob.get("persist", {}), ob.get("drain", {})
        rows.append(("uplink outbox", "durable persist (fsync per result)", f"{_f(p.get('results_per_s'), '{:.0f}')} results/s",
                     f"p99 {_f(p.get('latency_ms_p99'))} ms per call (bench_outbox.py)"))
        rows.append(("uplink outbox", "drain to mosquitto after an outage", f"{_f(dr.get('messages_per_s'), '{:.0f}')} msg/s",
                     f"{dr.get('messages')} queued, lost {dr.get('lost')}, duplicates {dr.get('duplicates')}, "
                     f"critical first {dr.get('critical_first')}"))
    fl = _g(b, "fleet", "data")
    if fl:
        rows.append(("fleet", "devices one mosquitto carries (>=99 % delivered, admin p95 < 1 s)",
                     f"{fl.get('max_devices_carried')}", "simulated devices on the same 2 CPUs (bench_fleet.py)"))
    dp = _g(b, "display", "data")
    if dp:
        rows.append(("bedside display", "daemon CPU with the page open (extra)",
                     f"{_f(dp.get('daemon_cpu_page_open'), '{:.1f}')} % ({_f(dp.get('daemon_cpu_extra_with_page'), '{:+.1f}')})",
                     f"headless Chromium {_f(dp.get('browser_cpu_page_open'), '{:.1f}')} % (bench_display.py)"))

    for add in (_rhythm_rows, _lean_rows, _cloud_rows):
        try:
            add(b, rows, worse)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:   # a changed script output: say so
            worse.append(f"{add.__name__} could not render its rows ({type(e).__name__}: {e}); raw figures are "
                         "in results.json.")

    # --- soak
    for name in ("soak", "soak_long"):
        sk = _g(b, name, "data")
        if not sk:
            continue
        r = sk["results"]
        area = "soak under faults" + (" (long)" if name == "soak_long" else "")
        rows.append((area, f"{sk['duration_s']:.0f} s: results stored / at subscriber / lost / duplicated",
                     f"{r['in_store']} / {r['at_subscriber']} / {len(sk['lost_results'])} / "
                     f"{len(sk['duplicate_results']) + len(sk['duplicate_windows'])}",
                     f"{'PASS' if sk['ok'] else 'FAIL: ' + '; '.join(sk['problems'])}; msg_id redeliveries (QoS 1) "
                     f"{sk['msg_id_redeliveries']}"))
        s = sk["slots_10s"]
        rows.append((area, "10 s windows of the stream: result / cannot interpret / reported gap / unaccounted",
                     f"{s['result']} / {s['cannot_interpret']} / {s['gap']} / {s['UNACCOUNTED']}",
                     f"faults: electrode off, noise, corrupted bytes, cable pull, broker restart, daemon SIGKILL; "
                     f"breaks reported {sum(x['reported'] for x in sk['breaks'])}/{len(sk['breaks'])}"))
        mem = sk["memory"]["per_daemon"]
        longest = max(mem, key=lambda d: d["seconds"]) if mem else {}
        rows.append((area, "daemon RSS growth after warm-up (longest lifetime)",
                     f"{_f(longest.get('growth_after_warmup_mb'), '{:+.1f}', ' MB')}",
                     f"over {longest.get('seconds')} s, slope {longest.get('slope_mb_per_hour')} MB/h, max {longest.get('rss_max_mb')} MB"))
        slopes = [d for d in mem if d.get("slope_mb_per_hour") is not None and d["seconds"] >= 300
                  and d["slope_mb_per_hour"] > 1.0]
        if slopes:
            worse.append(f"Memory is not proven flat: in the {name} run, daemon lifetimes of "
                         + ", ".join(f"{d['seconds'] / 60:.0f} min grew {d['growth_after_warmup_mb']:+.1f} MB after warm-up "
                                     f"(slope {d['slope_mb_per_hour']:.1f} MB/h, RSS max {d['rss_max_mb']} MB)" for d in slopes)
                         + ". Small, but a run of hours is needed to tell a slow leak from allocator settling.")
        for f in sk.get("fault_windows", []):
            if f["windows_inside"] and f["cannot_interpret"] < f["windows_inside"]:
                worse.append(f"In the soak, {f['windows_inside'] - f['cannot_interpret']} of {f['windows_inside']} "
                             f"windows entirely inside {f['fault']} were interpreted rather than called "
                             "'cannot interpret'.")
    return rows, worse


def _x(before: Any, after: Any, fmt: str = "{:.2f}") -> str:
    """'after / before = ratio' text for the comparison column."""
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or not before:
        return "before: not measured"
    return f"before {fmt.format(before)}; after/before x{after / before:.2f}"


def _rhythm_rows(b: dict[str, Any], rows: list[tuple[str, str, str, str]], worse: list[str]) -> None:
    """Issue 18: the rhythm detectors' EC57-style totals (training.rhythm_eval --json)."""
    rh = _g(b, "rhythm", "data")
    tot = (rh or {}).get("total")
    if not tot:
        return
    area = "rhythm (MIT-BIH dev, EC57-style)"
    n = len(rh.get("records", []))
    note = f"{n} development records, {_f(tot.get('hours'), '{:.2f}')} h (thresholds chosen on them)"
    rows.append((area, "AF duration sensitivity / positive predictivity",
                 f"{_f(tot.get('af_duration_se'), '{:.1f}')} % / {_f(tot.get('af_duration_ppv'), '{:.1f}')} %",
                 "goal >= 90 % / >= 90 %; " + note))
    rows.append((area, "VT episode sensitivity / positive predictivity",
                 f"{_f(tot.get('vt_episode_se'), '{:.1f}')} % / {_f(tot.get('vt_episode_ppv'), '{:.1f}')} %",
                 "goal Se >= 75 %; " + note))
    rows.append((area, "VF episode sensitivity / positive predictivity; alarm delay median / max",
                 f"{_f(tot.get('vf_episode_se'), '{:.1f}')} % / {_f(tot.get('vf_episode_ppv'), '{:.1f}')} %; "
                 f"{_f(tot.get('vf_alarm_delay_s_median'), '{:.1f}')} s / {_f(tot.get('vf_alarm_delay_s_max'), '{:.1f}')} s",
                 "goal: alarm within 10 s of onset; " + note))
    rows.append((area, "false VT/VF alarms per hour of monitoring",
                 _f(tot.get("false_vt_vf_alarms_per_hour"), "{:.2f}"), "goal <= 1 per hour; " + note))
    for key, goal, what in (("af_duration_se", 90, "AF duration sensitivity"),
                            ("af_duration_ppv", 90, "AF duration positive predictivity"),
                            ("vt_episode_se", 75, "VT episode sensitivity")):
        v = tot.get(key)
        if isinstance(v, (int, float)) and v < goal:
            worse.append(f"Rhythm: {what} {v:.1f} % on the development records, below issue 18's {goal} %.")
    fa = tot.get("false_vt_vf_alarms_per_hour")
    if isinstance(fa, (int, float)) and fa > 1:
        worse.append(f"Rhythm: {fa:.2f} false VT/VF alarms per hour on the development records, above issue 18's 1.")
    dmax = tot.get("vf_alarm_delay_s_max")
    if isinstance(dmax, (int, float)) and dmax > 10:
        worse.append(f"Rhythm: a VF alarm came {dmax:.1f} s after onset, later than issue 18's 10 s.")


def _lean_rows(b: dict[str, Any], rows: list[tuple[str, str, str, str]], worse: list[str]) -> None:
    """Issue 17: the previous version and this one, measured in the same run (bench_lean.py)."""
    ln = _g(b, "lean", "data")
    if not ln:
        return
    area = "lean device (issue 17)"
    ref = ln.get("before_ref", "?")
    fp = ln.get("footprint", {})
    fa, fb = fp.get("after") or {}, fp.get("before") or {}
    if fa and "error" not in fa:
        last = list(fa)[-1]
        heavy_b = _g(fb, last, "heavy", default=[])
        rows.append((area, "daemon's libraries + modules, imported and exercised (fresh Python, RSS)",
                     f"{fa[last]['rss_mb']:.0f} MB (" + ", ".join(f"{k} {v['rss_mb']:.0f}" for k, v in fa.items()) + ")",
                     _x(_g(fb, last, "rss_mb"), fa[last]["rss_mb"], "{:.0f} MB") +
                     (f" (before, loaded: {', '.join(heavy_b)})" if heavy_b else "") + f"; before = git {ref}"))
    dm = ln.get("daemon", {})
    da, db = dm.get("after") or {}, dm.get("before") or {}
    if da and "error" not in da:
        rows.append((area, "daemon RSS at 500 Hz real time, MQTT + display on (goal <= 100 MB)",
                     f"{da['rss_mb_max_streaming']:.0f} MB max ({da['seconds']:.0f} s, {da['results']} results)",
                     _x(db.get("rss_mb_max_streaming"), da["rss_mb_max_streaming"], "{:.0f} MB")))
        rows.append((area, "start to READY=1 / cable connected -> first result stored",
                     f"{da['startup_to_ready_s']:.2f} s / {_f(da.get('cable_connect_to_first_result_s'), '{:.2f}', ' s')}",
                     "first result needs 10 s of signal + the resampler's 0.18 s look-ahead + analysis; "
                     + _x(db.get("startup_to_ready_s"), da["startup_to_ready_s"], "{:.2f} s (READY)")))
        if da["rss_mb_max_streaming"] > 100:
            worse.append(f"The daemon runs at {da['rss_mb_max_streaming']:.0f} MB with MQTT and display on, above "
                         "the 100 MB goal of issue 17.")
    ra, rb = _g(ln, "replay", "after", default={}), _g(ln, "replay", "before", default={})
    ca, cb = _g(ln, "replay_cli", "after", default={}), _g(ln, "replay_cli", "before", default={})
    if ca and "error" not in ca:
        rows.append((area, f"`ecg-edge replay` of {ca['records']} 10 s records: peak RSS (goal <= 100 MB)",
                     f"{ca['peak_rss_mb']:.0f} MB", _x(cb.get("peak_rss_mb"), ca["peak_rss_mb"], "{:.0f} MB")))
        rows.append((area, f"`ecg-edge replay` of {ca['records']} 10 s records: wall time with process start",
                     f"{ca['wall_s_with_start']:.1f} s", _x(cb.get("wall_s_with_start"), ca["wall_s_with_start"],
                                                            "{:.1f} s")))
    if ra and "error" not in ra:
        rows.append((area, "replay throughput, one core, excluding process start (goal >= 1000x)",
                     f"{ra['x_real_time_cpu']:.0f}x real time ({ra['ms_per_record_cpu']:.1f} ms CPU per 10 s record)",
                     _x(rb.get("x_real_time_cpu"), ra["x_real_time_cpu"], "{:.0f}x")))
        st_a, st_b = ra.get("stage_ms_per_record", {}), rb.get("stage_ms_per_record", {})
        rows.append((area, "where replay's time goes, CPU ms per record (after | before)",
                     "; ".join(f"{k} {v:.1f} | {_f(st_b.get(k), '{:.1f}')}" for k, v in st_a.items()),
                     "stage CPU time measured around each stage in the replay process"))
        if ra["x_real_time_cpu"] < 1000:
            gate = st_a.get("quality gate", 0.0)
            beats = st_a.get("beats (heart rate)", 0.0)
            worse.append(f"Replay analyses {ra['x_real_time_cpu']:.0f}x real time on one core, short of issue 17's "
                         f"1000x: per 10 s record the quality gate ({gate:.1f} ms) and the beat detector ({beats:.1f} ms) "
                         "filter 12 leads at 500 Hz several times; their figures (the gate's confusion table, MIT-BIH) "
                         "were to stay bit-identical, so their filters and bands were kept.")
    sa, sb = _g(ln, "stream", "after", default={}), _g(ln, "stream", "before", default={})
    if sa and "error" not in sa:
        rows.append((area, "streaming chain end to end in-process, 10-sample blocks (goal >= 1000x)",
                     f"{sa['x_real_time_cpu']:.0f}x real time per CPU ({sa['windows']} windows)",
                     _x(sb.get("x_real_time_cpu"), sa["x_real_time_cpu"], "{:.0f}x")))
        st_a, st_b = sa.get("cpu_ms_per_window_by_stage", {}), sb.get("cpu_ms_per_window_by_stage", {})
        rows.append((area, "where the streaming chain's time goes, CPU ms per window (after | before)",
                     "; ".join(f"{k} {v:.1f} | {_f(st_b.get(k), '{:.1f}')}" for k, v in st_a.items()),
                     "one window per 5 s stride; blocks of 10 samples = one wire frame"))
        if sa["x_real_time_cpu"] < 1000:
            worse.append(f"The streaming chain runs {sa['x_real_time_cpu']:.0f}x real time per CPU, short of 1000x: "
                         "a 5 s stride costs one full 10 s window analysis (gate, beats, model) plus 500 wire-frame blocks.")


def _cloud_rows(b: dict[str, Any], rows: list[tuple[str, str, str, str]], worse: list[str]) -> None:
    """The cloud station's and the strip upload's figures (their scripts' own JSON)."""
    su = _g(b, "strip_upload", "data")
    if su:
        sz = su.get("sizes") or []
        if sz:
            rows.append(("strip upload", "bytes on the wire per 10 s window: result / 12-lead strip (first record)",
                         f"{sz[0].get('result_bytes')} / {sz[0].get('strip_bytes')} B",
                         f"encode {sz[0].get('encode_ms')} ms, decode+verify {sz[0].get('decode_verify_ms')} ms "
                         "(bench_strip_upload.py)"))
        e = su.get("enqueue") or {}
        if e:
            rows.append(("strip upload", "outbox bytes per hour at a 5 s stride (results + strips)",
                         f"{e.get('outbox_mb_per_hour_5s_stride')} MB/h", f"{e.get('outbox_bytes_per_window')} B per window"))
        for d in su.get("drain") or []:
            rows.append(("strip upload", f"drain after an outage ({'results + strips' if d.get('with_strips') else 'results only'})",
                         f"{d.get('msgs_per_s')} msg/s, {d.get('mbytes_per_s')} MB/s",
                         f"{d.get('messages')} messages, drained {d.get('drained')}"))
    ci = _g(b, "cloud_ingest", "data")
    for r in (ci or {}).get("rows", []):
        rows.append(("cloud station", f"ingest: {r.get('db')}, {r.get('workers')} worker(s)"
                     + (", via a bridged regional broker" if r.get("bridge") else ""),
                     f"{r.get('msgs_per_s')} msg/s ({r.get('results_per_s')} results/s)",
                     f"exactly once {r.get('exactly_once')}, quarantined {r.get('quarantined')} (bench_cloud_ingest.py)"))
        if r.get("exactly_once") is False:
            worse.append(f"Cloud ingest ({r.get('db')}, {r.get('workers')} workers) did not store every message exactly once.")
    cb = _g(b, "cloud_backlog", "data")
    if cb:
        rows.append(("cloud station", f"fleet back online: {cb.get('devices')} devices x {cb.get('backlog')} results drained",
                     f"{cb.get('drain_s')} s ({cb.get('msgs_per_s')} msg/s)",
                     f"{cb.get('db')}, {cb.get('workers')} workers; lost or duplicated: {cb.get('lost_or_duplicated')}"))
    cl = _g(b, "cloud_latency", "data")
    if cl:
        rows.append(("cloud station", "device publish -> visible in the clinician's worklist",
                     f"median {cl.get('visible_median_s')} s, p99 {cl.get('visible_p99_s')} s",
                     f"row committed: median {cl.get('committed_median_s')} s; {cl.get('seen')}/{cl.get('results')} seen"))
    cp = _g(b, "cloud_pages", "data")
    for db, pages in ((cp or {}).get("by_db") or {}).items():
        if isinstance(pages, dict):
            txt = ", ".join(f"{k} {v.get('median_ms')} ms" for k, v in pages.items() if isinstance(v, dict))
            rows.append(("cloud station", f"page times with {cp.get('results')} results stored ({db}), median",
                         txt or "not measured", "p95 in results.json (bench_cloud_pages.py)"))


def render_md(res: dict[str, Any]) -> str:
    rows, worse = build_rows(res)
    mc = res["machine"]
    lines = ["# Benchmark results", "",
             "> A triage aid, not a diagnosis. These are engineering figures, not clinical performance claims.", "",
             f"Generated by `python benchmarks/run_all.py` on {res['date_utc']} (UTC); raw figures in "
             "`benchmarks/results.json`.", "",
             f"**Machine:** {mc['cpu_model']}, {mc['cores']} cores, {mc['ram_gb']} GB RAM, {mc['os']}, "
             f"Python {mc['python']}; " + ", ".join(f"{k} {v}" for k, v in mc["packages"].items()) +
             f". Load average (1 min) {res['load_avg_1m_before']} before, {res['load_avg_1m_after']} after: "
             "a shared machine; compare ratios rather than absolute times.", "",
             "| area | figure | value | compared with / notes |", "|---|---|---|---|"]
    for a, f, v, n in rows:
        lines.append(f"| {a} | {f} | {v} | {n} |")
    missing = [k for k, v in res["benchmarks"].items() if not v.get("ok")]
    lines += ["", "## Where the appliance is slower or heavier, plainly", ""]
    lines += [f"- {w}" for w in worse if w] or ["- Nothing in this run."]
    if missing:
        lines += ["", "## Not measured in this run", ""]
        lines += [f"- {k}: {res['benchmarks'][k].get('error', 'failed')[:400]}" for k in missing]
    lines += ["", "## How each figure was measured", ""]
    for k, v in res["benchmarks"].items():
        lines.append(f"- **{k}**: `{v.get('command')}` (measured {v.get('measured_utc', res['date_utc'])} UTC, "
                     f"{v.get('seconds', '?')} s, load {v.get('load_avg_1m_before')} -> {v.get('load_avg_1m_after')})")
    lines += ["", "Method details: docs/benchmarks.md.", ""]
    return "\n".join(lines)


README = ROOT / "README.md"
README_BEGIN = "<!-- results:begin (generated by benchmarks/run_all.py; do not edit by hand) -->"
README_END = "<!-- results:end -->"


def update_readme(res: dict[str, Any], readme: Path = README) -> bool:
    """Put the results table (and the plain 'slower or heavier' list) into the README between the markers,
    so the README's figures are always the ones the last run measured. False when the markers are absent."""
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        return False
    md = render_md(res)
    body = md.split("| area | figure |", 1)[1].split("## How each figure was measured", 1)[0]
    mc = res["machine"]
    block = "\n".join([
        README_BEGIN,
        f"Measured {res['date_utc']} UTC on {mc['cpu_model']}, {mc['cores']} cores, {mc['ram_gb']} GB RAM, "
        f"{mc['os']}, Python {mc['python']} (a shared VM, not a Pi or a Jetson). Raw figures: "
        "`benchmarks/results.json`; commands and load per figure: `benchmarks/RESULTS.md`.", "",
        "| area | figure |" + body.replace("## Where the appliance is slower or heavier, plainly",
                                          "**Where the appliance is slower or heavier, plainly:**").rstrip(),
        README_END])
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + block + tail, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short versions (development)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--render-only", action="store_true", help="re-render RESULTS.md from results.json")
    a = ap.parse_args(argv)
    if a.render_only:
        res = json.loads(RESULTS_JSON.read_text())
        RESULTS_MD.write_text(render_md(res))
        print(f"wrote {RESULTS_MD}" + (" and the README table" if update_readme(res) else ""))
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()] or DEFAULT
    bad = [n for n in names if n not in BENCHES]
    if bad:
        raise SystemExit(f"error: unknown benchmark(s) {bad}; choose from {', '.join(BENCHES)}")
    prev = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    kept = {k: v for k, v in prev.get("benchmarks", {}).items() if a.only or k not in DEFAULT}
    res: dict[str, Any] = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "quick": a.quick,
                           "machine": machine(), "load_avg_1m_before": round(os.getloadavg()[0], 2),
                           "benchmarks": kept}
    for n in names:
        res["benchmarks"][n] = run_bench(n, a.quick)
    manifest = json.loads((ROOT / "quantized_models" / "manifest.json").read_text())
    res["model"] = {"version": manifest.get("model_version"), "sha256": manifest.get("model_sha256"),
                    "file": manifest.get("model_file"), "size_bytes": manifest.get("model_size_bytes"),
                    "metrics_val": manifest.get("metrics_val"), "thresholds": manifest.get("thresholds"),
                    "source": "quantized_models/manifest.json (val = PTB-XL strat_fold 9; fold 10 not used)"}
    res["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    RESULTS_JSON.write_text(json.dumps(res, indent=1, default=str) + "\n")
    RESULTS_MD.write_text(render_md(res))
    print(f"wrote {RESULTS_JSON} and {RESULTS_MD}" + (" and the README table" if update_readme(res) else ""))
    return 0 if all(res["benchmarks"][n].get("ok") for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
