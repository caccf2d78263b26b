"""How many seconds of 12-lead 500 Hz signal the signal chain processes per CPU second.

Input: the 42 real PTB-XL 500 Hz records of tests/fixtures (10 s each, 420 s in all), replayed as
a stream. Stages, timed with process CPU time (time.process_time, all threads of this process):
  stream   StreamingConditioner (50 Hz notch + 0.5 Hz high-pass) + StreamingResampler (500 -> 100 Hz),
           fed in blocks of --block samples (10 = one wire frame at 500 Hz)
  quality  ecg_quality on each 10 s window at 500 Hz
  beats    ecg_measure (R peaks on 12 leads, RR, QRS) on each 10 s window at 500 Hz
  model    contract.make_model_input on each resampled 10 s window
Run: python benchmarks/bench_signal_chain.py [--block 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_app.signal_chain.beats import ecg_measure  # noqa: E402
from edge_app.signal_chain.conditioning import StreamingConditioner, StreamingResampler  # noqa: E402
from edge_app.signal_chain.contract import make_model_input  # noqa: E402
from edge_app.signal_chain.quality import ecg_quality  # noqa: E402


def load() -> list[np.ndarray]:
    import wfdb
    recs = sorted((ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea"))
    return [wfdb.rdrecord(str(p.with_suffix(""))).p_signal * 1000.0 for p in recs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=10, help="streaming block size in samples (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="repeat and keep the best (default 3)")
    a = ap.parse_args()
    fs = 500.0
    wins = load()
    stream = np.concatenate(wins)
    sig_s = stream.shape[0] / fs
    best: dict[str, float] = {}
    for _ in range(a.repeat):
        t0 = time.process_time()
        cond, rs = StreamingConditioner(fs, mains_hz=50), StreamingResampler(fs)
        out = []
        for i in range(0, stream.shape[0], a.block):
            blk = stream[i:i + a.block]
            cond.process(blk)
            out.append(rs.process(blk))
        out.append(rs.flush())
        t1 = time.process_time()
        for w in wins:
            ecg_quality(w, fs, mains_hz=50)
        t2 = time.process_time()
        for w in wins:
            ecg_measure(w, fs)
        t3 = time.process_time()
        y = np.concatenate(out)
        for k in range(0, y.shape[0] - 999, 1000):
            make_model_input(y[k:k + 1000])
        t4 = time.process_time()
        for k, v in (("stream", t1 - t0), ("quality", t2 - t1), ("beats", t3 - t2), ("model", t4 - t3)):
            best[k] = min(best.get(k, np.inf), v)
    total = sum(best.values())
    print(f"signal: {len(wins)} real PTB-XL records, 12 leads, 500 Hz, {sig_s:.0f} s; block {a.block} samples; "
          f"best of {a.repeat}; CPU: {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    for k, v in best.items():
        print(f"  {k:8s} {v:7.3f} CPU s  -> {sig_s / v:9.0f} s of signal per CPU second")
    print(f"  {'chain':8s} {total:7.3f} CPU s  -> {sig_s / total:9.0f} s of signal per CPU second "
          f"(real-time factor {sig_s / total:.0f}x)")


if __name__ == "__main__":
    main()
