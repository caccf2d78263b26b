"""Cost of the audit anchor (issue 14 item 4): append latency of the hash-chained audit log with the anchor
(one extra 256-byte pwrite + fsync per entry) against the bare chain, on the disk holding --dir.

    .venv/bin/python benchmarks/bench_audit_anchor.py [--entries 300] [--dir /var/tmp] [--json]

The bare chain is measured by the same AuditLog with the anchor writer's update made a no-op, so the only
difference is the anchor write. Prints median / p95 / max in ms.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.storage.audit import AuditLog  # noqa: E402


def run(directory: Path, n: int, anchored: bool) -> list[float]:
    with tempfile.TemporaryDirectory(dir=directory) as d:
        log = AuditLog(Path(d) / "audit.jsonl", "bench")
        if not anchored:
            log._anchor.update = lambda seq, h: None          # the bare chain: same code, no anchor write
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            log.append("result", {"id": f"r{i:06d}", "triage_level": "none", "probabilities": {"NORM": 0.9}})
            times.append((time.perf_counter() - t0) * 1000)
        log.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=300)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = {}
    for name, anchored in (("chain only", False), ("chain + anchor", True), ("chain only (again)", False),
                           ("chain + anchor (again)", True)):
        t = sorted(run(Path(a.dir), a.entries, anchored))
        out[name] = {"median_ms": round(statistics.median(t), 3), "p95_ms": round(t[int(0.95 * len(t))], 3),
                     "max_ms": round(t[-1], 3)}
    if a.json:
        print(json.dumps({"entries": a.entries, "dir": a.dir, "results": out}))
    else:
        print(f"audit append, {a.entries} entries each, on {a.dir}:")
        for name, r in out.items():
            print(f"  {name:24s} median {r['median_ms']:.3f} ms  p95 {r['p95_ms']:.3f} ms  max {r['max_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
