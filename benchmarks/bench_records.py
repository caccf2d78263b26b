"""How long the one WFDB reader takes per record, and what a process that only reads records costs in memory.

What is measured, on the built-in real PTB-XL records (edge_app/data/records, 12 leads, 10 s):
- read_wfdb_uv per record (header checks + numpy format-16 path + conversion to microvolts), median of
  --repeat passes over all records, for the 500 Hz (_hr) and 100 Hz (_lr) files;
- the same records read through the wfdb library path (the fallback for other formats), for comparison;
- peak RSS of a fresh Python process that imports the reader and reads every record once (numpy path),
  and of one that also imports wfdb (what every reader cost before the numpy path).

Run: python benchmarks/bench_records.py [--repeat 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_bridge.records import _read_with_wfdb, read_wfdb_uv, record_base  # noqa: E402

RECORDS = ROOT / "edge_app" / "data" / "records"
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from this (larger) process would report ours.
RSS_CODE = """
import sys
sys.path.insert(0, {root!r})
{extra}
from firmware_bridge.records import read_wfdb_uv
from pathlib import Path
for p in sorted(Path({records!r}).glob('*.hea')):
    read_wfdb_uv(p.with_suffix(''))
print(next(int(ln.split()[1]) for ln in open('/proc/self/status') if ln.startswith('VmHWM')) / 1024)
"""


def _time(fn, paths: list[Path], repeat: int) -> float:
    """Median milliseconds per record over `repeat` passes."""
    per = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        per.append((time.perf_counter() - t0) / len(paths) * 1000.0)
    return statistics.median(per)


def _peak_rss_mb(extra: str) -> float:
    code = RSS_CODE.format(root=str(ROOT), records=str(RECORDS), extra=extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res: dict[str, float] = {}
    for kind in ("hr", "lr"):
        paths = sorted(p.with_suffix("") for p in RECORDS.glob(f"*_{kind}.hea"))
        res[f"read_wfdb_uv_ms_{kind}"] = _time(read_wfdb_uv, paths, a.repeat)
        res[f"wfdb_library_ms_{kind}"] = _time(lambda p: _read_with_wfdb(record_base(p)), paths, a.repeat)
    res["peak_rss_mb_numpy_path"] = _peak_rss_mb("")
    res["peak_rss_mb_with_wfdb_imported"] = _peak_rss_mb("import wfdb")
    if a.json:
        print(json.dumps(res))
        return 0
    n = len(list(RECORDS.glob("*.hea")))
    print(f"WFDB reader on {n} built-in PTB-XL records (12 leads, 10 s), median of {a.repeat} passes:")
    print(f"  500 Hz: read_wfdb_uv {res['read_wfdb_uv_ms_hr']:.2f} ms/record, "
          f"via the wfdb library {res['wfdb_library_ms_hr']:.2f} ms/record")
    print(f"  100 Hz: read_wfdb_uv {res['read_wfdb_uv_ms_lr']:.2f} ms/record, "
          f"via the wfdb library {res['wfdb_library_ms_lr']:.2f} ms/record")
    print(f"  peak RSS of a process reading them: {res['peak_rss_mb_numpy_path']:.1f} MB "
          f"(with wfdb imported: {res['peak_rss_mb_with_wfdb_imported']:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
