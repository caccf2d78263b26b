"""Build the tiny shard-layout test fixture (tests/fixtures/ptbxl100_mini) from ../shared/data/ptbxl100.

Rows are copied bit-exact from the original shards (same d8/r4 encoding), so the fixture exercises the
real decoder. Records are picked deterministically so that every class has positives in both splits.
Usage: python -m training.fixtures [SRC] [DST]
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from edge_app.signal_chain.contract import CLASSES
from training.data import read_labels_csv


def make_mini_fixture(src: Path, dst: Path, n_train: int = 40, n_val: int = 20, seed: int = 0) -> Path:
    labels = read_labels_csv(src / "labels.csv")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for split, n in (("train", n_train), ("val", n_val)):
        idx = np.where(labels["split"] == split)[0]
        per = n // len(CLASSES)
        picked: list[int] = []
        for k in range(len(CLASSES)):
            pos = [i for i in idx[labels["y"][idx, k] == 1] if i not in picked]
            picked += list(rng.choice(pos, size=per, replace=False))
        rest = [i for i in idx if i not in picked]
        picked += list(rng.choice(rest, size=n - len(picked), replace=False))
        chosen += [int(labels["ecg_id"][i]) for i in picked]
    want = set(chosen)
    manifest = json.loads((src / "manifest.json").read_text())
    ids, d8s, r4s = [], [], []
    for sh in manifest["shards"]:
        with np.load(src / sh["file"]) as z:
            keep = np.isin(z["ecg_id"], list(want))
            if keep.any():
                ids.append(z["ecg_id"][keep]); d8s.append(z["d8"][keep]); r4s.append(z["r4"][keep])
    ecg_id = np.concatenate(ids)
    order = np.argsort(ecg_id)
    dst.mkdir(parents=True, exist_ok=True)
    shard = dst / "ptbxl100mini_000.npz"
    np.savez_compressed(shard, ecg_id=ecg_id[order].astype(np.int32), d8=np.concatenate(d8s)[order],
                        r4=np.concatenate(r4s)[order])
    m = {k: v for k, v in manifest.items() if k != "shards"}
    m["records"] = int(len(ecg_id))
    m["source"] = f"subset of {src.name} built by training/fixtures.py (rows copied bit-exact)"
    m["shards"] = [{"file": shard.name, "records": int(len(ecg_id)), "first_ecg_id": int(ecg_id.min()),
                    "last_ecg_id": int(ecg_id.max()), "sha256": hashlib.sha256(shard.read_bytes()).hexdigest()}]
    (dst / "manifest.json").write_text(json.dumps(m, indent=1))
    with open(src / "labels.csv") as f:
        header, *rows = f.read().splitlines()
    keep_rows = [r for r in rows if int(r.split(",")[0]) in want]
    (dst / "labels.csv").write_text("\n".join([header] + keep_rows) + "\n")
    (dst / "README.md").write_text(
        f"# ptbxl100_mini: {len(ecg_id)} real PTB-XL records ({n_train} train, {n_val} val) in the shard layout\n\n"
        "Built by `python -m training.fixtures` from `../shared/data/ptbxl100` (rows copied bit-exact; decode as in\n"
        "that directory's README). Used by the fast training-pipeline tests.\n\n"
        "Attribution: PTB-XL: Wagner P., Strodthoff N., et al. \"PTB-XL, a large publicly available electrocardiography\n"
        "dataset\", Scientific Data 7:154 (2020); PhysioNet, v1.0.3. License: CC BY 4.0. PhysioNet: Goldberger A. et al.,\n"
        "Circulation 101(23):e215-e220 (2000).\n")
    return dst


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data" / "ptbxl100"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "tests" / "fixtures" / "ptbxl100_mini"
    print(make_mini_fixture(src, dst))
