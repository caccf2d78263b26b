"""Bedside display cost: page frame/update time in headless Chromium and the daemon's extra CPU.

What it does (real parts only): starts the pty front-end simulator replaying a real PTB-XL record
(edge_app/data/records/00181_hr, looped, real time) and `ecg-edge run` with [display] enabled, then
  1. daemon CPU with no page open                              (psutil, user+sys of the daemon process)
  2. daemon CPU with the page open in headless Chromium         (same window length)
  3. page cost, measured inside the page with performance.now(): per-frame sweep draw, per-SSE-message
     handling, result-strip redraw; frames/s; long tasks (> 50 ms). Once at full speed and once with
     Chromium's CPU throttling (Emulation.setCPUThrottlingRate, default 4x) to stand in for a slow CPU.
  4. in-process micro-figures: LiveHub.push_samples per 10-sample block, PNG render of a result.
Prints a human summary and, with --json, one JSON object.

    python benchmarks/bench_display.py [--seconds 20] [--throttle 4] [--json]
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
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))      # the Chrome DevTools test client is a test tool

from cdp_browser import Browser  # noqa: E402

RECORD = ROOT / "edge_app" / "data" / "records" / "00181_hr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_percent(proc: psutil.Process, seconds: float) -> float:
    """Average CPU of a process over a window, in % of one core (user + system)."""
    t0 = proc.cpu_times()
    w0 = time.monotonic()
    time.sleep(seconds)
    t1 = proc.cpu_times()
    return 100.0 * ((t1.user - t0.user) + (t1.system - t0.system)) / (time.monotonic() - w0)


def tree_cpu_percent(root: psutil.Process, seconds: float) -> float:
    procs = [root] + root.children(recursive=True)
    t0 = {}
    for p in procs:
        try:
            c = p.cpu_times()
            t0[p.pid] = c.user + c.system
        except psutil.Error:
            pass
    w0 = time.monotonic()
    time.sleep(seconds)
    total = 0.0
    for p in procs:
        try:
            c = p.cpu_times()
            total += c.user + c.system - t0.get(p.pid, c.user + c.system)
        except psutil.Error:
            pass
    return 100.0 * total / (time.monotonic() - w0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


PAGE_PROBE = """(() => { const p = ecg.perf; return {frames: p.frames, drawMsTotal: p.drawMsTotal, drawMs: p.drawMs.slice(),
  msgs: p.msgs, msgMsTotal: p.msgMsTotal, samplesIn: p.samplesIn, resultDraws: p.resultDraws,
  resultDrawMsTotal: p.resultDrawMsTotal, longTasks: (window.__longTasks || []).slice()}; })()"""
LONGTASK_OBSERVER = """window.__longTasks = []; try { new PerformanceObserver(l => { for (const e of l.getEntries())
  window.__longTasks.push(e.duration); }).observe({entryTypes: ['longtask']}); } catch (e) {} true"""


def page_window(page, seconds: float) -> dict:
    """Page-side figures over a window (differences of the page's own counters)."""
    a = page.evaluate(PAGE_PROBE)
    time.sleep(seconds)
    b = page.evaluate(PAGE_PROBE)
    frames = b["frames"] - a["frames"]
    new_draws = b["drawMs"][-frames:] if frames > 0 else []
    msgs = b["msgs"] - a["msgs"]
    rd = b["resultDraws"] - a["resultDraws"]
    return {
        "seconds": seconds,
        "frames_per_s": frames / seconds,
        "draw_ms_mean": (b["drawMsTotal"] - a["drawMsTotal"]) / frames if frames else None,
        "draw_ms_p50": pct(new_draws, 0.5), "draw_ms_p95": pct(new_draws, 0.95), "draw_ms_max": max(new_draws or [0]),
        "sse_msgs_per_s": msgs / seconds,
        "msg_ms_mean": (b["msgMsTotal"] - a["msgMsTotal"]) / msgs if msgs else None,
        "samples_per_s": (b["samplesIn"] - a["samplesIn"]) / seconds,
        "result_draws": rd,
        "result_draw_ms_mean": (b["resultDrawMsTotal"] - a["resultDrawMsTotal"]) / rd if rd else None,
        "busy_ms_per_s": ((b["drawMsTotal"] - a["drawMsTotal"]) + (b["msgMsTotal"] - a["msgMsTotal"])
                          + (b["resultDrawMsTotal"] - a["resultDrawMsTotal"])) / seconds,
        "long_tasks": len(b["longTasks"]) - len(a["longTasks"]),
        "long_task_ms_max": max(b["longTasks"][len(a["longTasks"]):] or [0]),
    }


def micro() -> dict:
    import wfdb
    from edge_app.display import LiveHub
    from edge_app.display.render_png import render_result_png
    from edge_app.display.server import display_strip
    from firmware_bridge.samples import LEADS
    rec = wfdb.rdrecord(str(RECORD))
    names = [n.upper() for n in rec.sig_name]
    x = rec.p_signal[:, [names.index(lead.upper()) for lead in LEADS]] * 1000.0
    hub = LiveHub()
    lo = np.zeros((10, 9), bool)
    n = 0
    t0 = time.perf_counter()
    for _ in range(6):
        for i in range(0, 5000, 10):
            hub.push_samples(n, 500, x[i:i + 10], lo)
            n += 10
    per_block_us = (time.perf_counter() - t0) / (n / 10) * 1e6
    result = {"id": "bench", "triage_level": "high", "probabilities": {"MI": 0.9},
              "explanation": {"findings": [{"cls": "MI", "leads": ["V2", "V3"], "seconds": [[2.0, 3.0]]}]}}
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        png = render_result_png(result, 500, display_strip(500, x), width=1600)
        times.append((time.perf_counter() - t0) * 1000)
    strip = hub.live_strip(hub.seq - 12)       # ~0.1 s of display data: one SSE samples message
    return {"push_block_us": per_block_us, "push_cpu_percent_at_500hz": per_block_us * 50 / 1e4,
            "png_render_ms_median": statistics.median(times), "png_bytes": len(png),
            "sse_samples_msg_bytes": len(json.dumps(strip, separators=(",", ":")))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each measurement window")
    ap.add_argument("--throttle", type=float, default=4.0, help="Chromium CPU throttling rate for the slow-CPU run")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    out: dict = {"record": "PTB-XL 00181_hr (500 Hz, looped, real time)", "cpu_count": os.cpu_count(),
                 "window_s": a.seconds}
    out["micro"] = micro()
    tmp = Path(tempfile.mkdtemp(prefix="bench-display-"))
    port = free_port()
    link = tmp / "frontend"
    sim = subprocess.Popen([sys.executable, "-m", "firmware_bridge.simulator_cli", str(RECORD), "--link", str(link)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    cfg = tmp / "cfg.toml"
    cfg.write_text(f'[device]\nid = "bench"\n[frontend]\nport = "{link}"\n[storage]\nstate_dir = "{tmp / "state"}"\n'
                   f'[display]\nenabled = true\nport = {port}\n[logging]\nlevel = "WARNING"\n')
    daemon = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/api/status", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        dproc = psutil.Process(daemon.pid)
        time.sleep(12)                                  # first windows analysed, steady state
        out["daemon_cpu_no_page"] = cpu_percent(dproc, a.seconds)
        browser = Browser()
        page = browser.new_page(1280, 800)
        page.navigate(base + "/")
        page.evaluate(LONGTASK_OBSERVER)
        page.wait_for("ecg.perf.frames > 10", 20)
        time.sleep(2)
        bproc = psutil.Process(browser.proc.pid)
        import threading
        box: dict = {}
        th = threading.Thread(target=lambda: box.update(browser=tree_cpu_percent(bproc, a.seconds)))
        th.start()
        out["daemon_cpu_page_open"] = cpu_percent(dproc, a.seconds)
        th.join()
        out["browser_cpu_page_open"] = box.get("browser")
        out["page_full_speed"] = page_window(page, a.seconds)
        page.send("Emulation.setCPUThrottlingRate", rate=a.throttle)
        time.sleep(2)
        out[f"page_throttled_{a.throttle:g}x"] = page_window(page, a.seconds)
        page.send("Emulation.setCPUThrottlingRate", rate=1)
        out["daemon_cpu_extra_with_page"] = out["daemon_cpu_page_open"] - out["daemon_cpu_no_page"]
        out["page_exceptions"] = page.exceptions
    finally:
        if browser is not None:
            browser.close()
        for p in (daemon, sim):
            p.send_signal(signal.SIGTERM)
        for p in (daemon, sim):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    if a.json:
        print(json.dumps(out, indent=1, default=float))
        return 0
    m = out["micro"]
    print(f"bedside display benchmark ({out['record']}, {out['cpu_count']} CPUs, {a.seconds:g} s windows)")
    print(f"  daemon CPU, no page open        : {out['daemon_cpu_no_page']:6.1f} % of one core")
    print(f"  daemon CPU, page open           : {out['daemon_cpu_page_open']:6.1f} %  "
          f"(extra {out['daemon_cpu_extra_with_page']:+.1f} points)")
    print(f"  headless Chromium (all procs)   : {out['browser_cpu_page_open']:6.1f} % of one core")
    for key in [k for k in out if k.startswith("page_")]:
        if not isinstance(out[key], dict):
            continue
        p = out[key]
        rd = "-" if p["result_draw_ms_mean"] is None else f"{p['result_draw_ms_mean']:.1f} ms"
        print(f"  page {key[5:]:<18}: {p['frames_per_s']:.0f} frames/s, sweep draw mean {p['draw_ms_mean']:.3f} ms "
              f"p95 {p['draw_ms_p95']:.3f} max {p['draw_ms_max']:.2f} ms; SSE {p['sse_msgs_per_s']:.1f} msg/s "
              f"handled in {p['msg_ms_mean']:.3f} ms; result redraw {rd}; "
              f"busy {p['busy_ms_per_s']:.1f} ms/s; long tasks {p['long_tasks']} (max {p['long_task_ms_max']:.0f} ms)")
    print(f"  LiveHub.push_samples            : {m['push_block_us']:.0f} us per 10-sample block "
          f"({m['push_cpu_percent_at_500hz']:.2f} % of a core at 500 Hz)")
    print(f"  PNG render (1600 px, 10 s)      : {m['png_render_ms_median']:.0f} ms median, {m['png_bytes']} bytes")
    print(f"  SSE samples message (~0.1 s)    : {m['sse_samples_msg_bytes']} bytes")
    if out["page_exceptions"]:
        print("  page exceptions:", out["page_exceptions"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
