"""How fast the host decodes the wire protocol, as a multiple of the real 500 Hz data rate.

What is timed: FrameDecoder.feed() on a byte stream cut into 4 KiB chunks (as serial reads deliver
it: COBS unstuffing, CRC-32, length checks, vectorised 24-bit unpacking), then per chunk the
conversion the driver does: channel reordering, counts -> microvolts with the device LSB, the 12
leads (derive_leads) and the lead-off flags. The frames are made from a real PTB-XL record (500 Hz,
10 samples per frame), so the zero-byte density COBS sees is that of real ECG.

Run: python benchmarks/bench_decoder.py [--record PATH] [--seconds-of-ecg 600] [--repeat 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge import protocol as P  # noqa: E402
from firmware_bridge.frame_decoder import FrameDecoder  # noqa: E402
from firmware_bridge.samples import CHANNELS, ELECTRODES, derive_leads  # noqa: E402
from firmware_bridge.simulator import load_record  # noqa: E402

DEFAULT_RECORD = ROOT / "tests" / "fixtures" / "ptbxl_official_sample" / "records500" / "00000" / "00018_hr"
FS = 500
LSB_PV = 47684


def make_stream(record: Path, seconds: float) -> tuple[bytes, int, int]:
    fs, uv = load_record(record)
    if fs != FS:
        from scipy.signal import resample_poly
        uv = resample_poly(uv, FS, fs, axis=0)
    n = P.samples_per_frame(FS)
    total = int(seconds * FS) // n * n
    rows = np.arange(total) % uv.shape[0]
    counts = np.clip(np.rint(uv[rows] / (LSB_PV / 1e6)), P.COUNT_MIN, P.COUNT_MAX).astype(np.int32)
    status = np.zeros(total, np.uint16)
    status[: total // 20] = 1 << ELECTRODES.index("LA")      # a little lead-off, as in real use
    out = bytearray()
    for k in range(total // n):
        sl = slice(k * n, (k + 1) * n)
        out += P.encode(P.DataFrame(k, k * 20000, status[sl], counts[sl]))
    return bytes(out), total // n, total


def run_once(stream: bytes, chunk: int) -> tuple[float, int, int]:
    dec = FrameDecoder()
    perm = np.arange(len(CHANNELS))
    lsb_uv = LSB_PV / 1e6
    shifts = np.arange(len(ELECTRODES), dtype=np.uint16)
    frames = samples = 0
    t0 = time.perf_counter()
    for pos in range(0, len(stream), chunk):
        msgs = dec.feed(stream[pos:pos + chunk])
        data = [m for m in msgs if isinstance(m, P.DataFrame)]
        if not data:
            continue
        counts = np.concatenate([m.counts for m in data]) if len(data) > 1 else data[0].counts
        status = np.concatenate([m.status for m in data]) if len(data) > 1 else data[0].status
        leads = derive_leads(counts[:, perm].astype(np.float64) * lsb_uv)
        lead_off = ((status[:, None] >> shifts) & 1).astype(bool)
        frames += len(data)
        samples += leads.shape[0]
        assert lead_off.shape[0] == leads.shape[0]
    dt = time.perf_counter() - t0
    assert dec.stats.frames_rejected == 0
    return dt, frames, samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", default=str(DEFAULT_RECORD))
    ap.add_argument("--seconds-of-ecg", type=float, default=600.0)
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call (a serial read)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    stream, n_frames, n_samples = make_stream(Path(a.record), a.seconds_of_ecg)
    runs = []
    for _ in range(a.repeat):
        dt, frames, samples = run_once(stream, a.chunk)
        assert frames == n_frames and samples == n_samples
        runs.append(dt)
    dt = statistics.median(runs)
    real_fps = FS / P.samples_per_frame(FS)
    res = {
        "record": str(Path(a.record).name), "fs_hz": FS, "samples_per_frame": P.samples_per_frame(FS),
        "frames": n_frames, "bytes": len(stream), "chunk_bytes": a.chunk, "repeats": a.repeat,
        "median_s": round(dt, 4), "frames_per_s": round(n_frames / dt), "samples_per_s": round(n_samples / dt),
        "mbytes_per_s": round(len(stream) / dt / 1e6, 2),
        "multiple_of_real_time_500hz": round(n_frames / dt / real_fps, 1),
        "python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"decoder + conversion to uV/12 leads, {res['record']} at {FS} Hz "
              f"({res['samples_per_frame']} samples/frame), {n_frames} frames, {len(stream)} bytes, "
              f"{a.chunk}-byte reads, median of {a.repeat}")
        print(f"  {res['frames_per_s']:,} frames/s   {res['samples_per_s']:,} samples/s   "
              f"{res['mbytes_per_s']} MB/s")
        print(f"  = {res['multiple_of_real_time_500hz']}x the real 500 Hz data rate ({real_fps:.0f} frames/s)")
        print(f"  Python {res['python']} on {res['machine']}, numpy {res['numpy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
