"""Reproduce the signal chain's published figures (docs/signal_chain.md).

  python -m training.signal_eval beats   [--data ../shared/data/mitdb_dev] [--channel 0] [--edge-s 1]
  python -m training.signal_eval quality [--data ../shared/data/ptbxl100] [--split val] [--limit N]

`beats`: R-peak Se/+P per MIT-BIH record against the cardiologists' beat annotations (150 ms).
`quality`: the quality gate's confusion table on PTB-XL shard records, clean and with the front end's
faults injected (faults.py). Development tool, not used by the daemon.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def beats_table(data: Path, channel: int = 0, edge_s: float = 1.0) -> tuple[list, tuple[float, float]]:
    import wfdb

    from training.beat_eval import score_record
    from edge_app.signal_chain.beats import ecg_peaks
    rows = []
    for hea in sorted(data.glob("*.hea")):
        base = str(hea.with_suffix(""))
        if not Path(base + ".atr").exists():
            continue
        rec = wfdb.rdrecord(base, channels=[channel])
        ann = wfdb.rdann(base, "atr")
        det = ecg_peaks(rec.p_signal[:, 0] * 1000.0, rec.fs)
        rows.append(score_record(hea.stem, ann.sample, ann.symbol, det, rec.fs, rec.sig_len, edge_s=edge_s))
    tp = sum(r.tp for r in rows)
    fn = sum(r.fn for r in rows)
    fp = sum(r.fp for r in rows)
    return rows, (tp / max(1, tp + fn), tp / max(1, tp + fp))


def _decode(d8: np.ndarray, r4: np.ndarray) -> np.ndarray:
    x = np.cumsum(d8.astype(np.int32), axis=1)
    i, ii = x[..., 0], x[..., 1]
    der = np.stack([ii - i, np.round(-(i + ii) / 2), np.round(i - ii / 2), np.round(ii - i / 2)], -1) + r4
    return np.concatenate([x[..., :2], der, x[..., 2:]], -1).astype(np.float64)


def quality_table(data: Path, split: str = "val", limit: int | None = None, seed: int = 1) -> dict[str, Counter]:
    import pandas as pd

    from edge_app.signal_chain import faults as F
    from edge_app.signal_chain.quality import ELECTRODES, ecg_quality
    lab = pd.read_csv(data / "labels.csv")
    ids = set(lab.ecg_id[lab.split == split])
    xs = []
    for shard in sorted(data.glob("ptbxl100_*.npz")):
        z = np.load(shard)
        m = np.isin(z["ecg_id"], list(ids))
        if m.any():
            xs.append(_decode(z["d8"][m], z["r4"][m]))
    X = np.concatenate(xs)
    if limit:
        X = X[np.random.default_rng(seed).choice(len(X), min(limit, len(X)), replace=False)]
    rng = np.random.default_rng(0)
    fs = 100.0
    out: dict[str, Counter] = {}

    def add(name: str, x: np.ndarray, **kw) -> None:
        out.setdefault(name, Counter())[ecg_quality(x, fs, **kw).verdict] += 1

    for k, x in enumerate(X):                        # loop over records
        add("clean", x)
        y, lo = F.electrode_off(x, fs, ELECTRODES[k % 9])
        add("electrode off (flags)", y, lead_off=lo)
        add("electrode off (signal only)", y)
        ch = ("V1", "V2", "V3", "V4", "V5", "V6", "I", "II")[k % 8]
        add("flat, all channels", F.flat(x))
        add("flat, one channel", F.flat(x, (ch,)))
        add("saturated, all channels", F.saturate(x))
        add("saturated, one channel", F.saturate(x, (ch,)))
        for a in (25, 50, 100, 200):
            add(f"noise {a} uV RMS", F.noise(x, a, rng))
        add("wander 500 uV 0.3 Hz", F.wander(x, fs, 500, 0.3, rng))
        add("wander 3 mV 0.3 Hz", F.wander(x, fs, 3000, 0.3, rng))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.signal_eval", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("beats", help="MIT-BIH R-peak Se/+P table")
    b.add_argument("--data", default=str(DEFAULT_DATA / "mitdb_dev"))
    b.add_argument("--channel", type=int, default=0)
    b.add_argument("--edge-s", type=float, default=1.0)
    q = sub.add_parser("quality", help="quality-gate confusion table on PTB-XL shards")
    q.add_argument("--data", default=str(DEFAULT_DATA / "ptbxl100"))
    q.add_argument("--split", default="val", choices=("train", "val"))
    q.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    data = Path(a.data)
    if not data.exists():
        print(f"no data at {data} (pass --data)", file=sys.stderr)
        return 2
    t0 = time.time()
    if a.what == "beats":
        rows, (se, ppv) = beats_table(data, a.channel, a.edge_s)
        print("| record | beats | TP | FN | FP | Se % | +P % |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r.record} | {r.n_ref} | {r.tp} | {r.fn} | {r.fp} | {100 * r.sensitivity:.2f} | {100 * r.ppv:.2f} |")
        print(f"| **all** | {sum(r.n_ref for r in rows)} | {sum(r.tp for r in rows)} | {sum(r.fn for r in rows)} | "
              f"{sum(r.fp for r in rows)} | **{100 * se:.2f}** | **{100 * ppv:.2f}** |")
    else:
        tab = quality_table(data, a.split, a.limit)
        print(f"| input ({a.split}) | good | acceptable | unusable | unusable % |\n|---|---|---|---|---|")
        for name, c in tab.items():
            n = sum(c.values())
            print(f"| {name} | {c['good']} | {c['acceptable']} | {c['unusable']} | {100 * c['unusable'] / n:.1f} % |")
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
