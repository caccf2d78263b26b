"""Data loaders for PTB-XL: the packed shards in ../shared/data/ptbxl100 and the official PhysioNet layout.

Both loaders return raw microvolt windows (int16/float, PTB-XL lead order) plus labels and demographics;
`to_model_inputs` then runs every window through the device's own contract (make_model_input,
demographics_vector), so training cannot drift from what the device feeds the model.
"""
from __future__ import annotations

import ast
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.signal_chain.contract import CLASSES, N_SAMPLES, demographics_vector, make_model_input
from firmware_bridge.leads import LEADS
from firmware_bridge.records import RecordError, read_wfdb_uv

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path(os.environ.get("ECG_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


class DataError(ValueError):
    """The data directory is missing, incomplete or inconsistent."""


@dataclass
class EcgSet:
    """A set of 10 s 100 Hz records: raw microvolts + multi-hot labels + demographics."""
    ecg_id: np.ndarray          # (n,) int
    x_uv: np.ndarray            # (n, 1000, 12) int16 or float, microvolts, PTB-XL lead order
    y: np.ndarray               # (n, 5) float32 multi-hot, CLASSES order
    age: np.ndarray             # (n,) float (nan = unknown; 300 = over 89 as coded by PTB-XL)
    sex: np.ndarray             # (n,) float (0 male, 1 female, nan unknown)
    split: np.ndarray           # (n,) str

    def __len__(self) -> int:
        return int(self.ecg_id.shape[0])

    def subset(self, idx: np.ndarray) -> "EcgSet":
        return EcgSet(self.ecg_id[idx], self.x_uv[idx], self.y[idx], self.age[idx], self.sex[idx], self.split[idx])


# ----------------------------------------------------------------------------------------------- shards
def decode_shard(d8: np.ndarray, r4: np.ndarray) -> np.ndarray:
    """Decode one shard's (d8, r4) to int16 (n, 1000, 12) microvolts, PTB-XL lead order (see data README)."""
    base = np.cumsum(d8.astype(np.int32), axis=1)               # I, II, V1..V6
    i, ii = base[..., 0].astype(np.float64), base[..., 1].astype(np.float64)
    derived = np.stack([ii - i, -(i + ii) / 2.0, i - ii / 2.0, ii - i / 2.0], axis=-1)
    derived = np.round(derived).astype(np.int32) + r4.astype(np.int32)   # np.round = round-half-even
    x = np.concatenate([base[..., :2], derived, base[..., 2:]], axis=-1)
    return x.astype(np.int16)


def read_labels_csv(path: Path) -> dict[str, np.ndarray]:
    import csv
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path} has no rows")
    missing = [c for c in ("ecg_id", "split", *CLASSES, "age", "sex") if c not in rows[0]]
    if missing:
        raise DataError(f"{path} lacks columns {missing}")

    def num(v: str) -> float:
        return float(v) if v not in ("", "nan", "NaN", None) else np.nan

    return {
        "ecg_id": np.array([int(r["ecg_id"]) for r in rows], dtype=np.int64),
        "split": np.array([r["split"] for r in rows]),
        "y": np.array([[float(r[c]) for c in CLASSES] for r in rows], dtype=np.float32),
        "age": np.array([num(r["age"]) for r in rows], dtype=np.float64),
        "sex": np.array([num(r["sex"]) for r in rows], dtype=np.float64),
    }


def load_shards(data_dir: str | Path, splits: tuple[str, ...] | None = None, verify: bool = False) -> EcgSet:
    """Load a shard-layout directory (shards + manifest.json + labels.csv), optionally only some splits."""
    d = Path(data_dir)
    man_path, lab_path = d / "manifest.json", d / "labels.csv"
    for p in (man_path, lab_path):
        if not p.exists():
            raise DataError(f"{p} not found: expected a shard-layout directory like ../shared/data/ptbxl100")
    manifest = json.loads(man_path.read_text())
    labels = read_labels_csv(lab_path)
    row_of = {int(e): k for k, e in enumerate(labels["ecg_id"])}
    ids, xs = [], []
    for sh in manifest["shards"]:
        f = d / sh["file"]
        if verify:
            import hashlib
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            if h != sh["sha256"]:
                raise DataError(f"{f} sha256 {h} != manifest {sh['sha256']}")
        with np.load(f) as z:
            e = z["ecg_id"].astype(np.int64)
            keep = np.ones(len(e), dtype=bool)
            if splits is not None:
                keep = np.array([labels["split"][row_of[int(k)]] in splits if int(k) in row_of else False for k in e])
            if not keep.any():
                continue
            xs.append(decode_shard(z["d8"][keep], z["r4"][keep]))
            ids.append(e[keep])
    if not ids:
        raise DataError(f"no records for splits {splits} in {d}")
    ecg_id = np.concatenate(ids)
    missing = [int(k) for k in ecg_id if int(k) not in row_of]
    if missing:
        raise DataError(f"{len(missing)} shard records have no row in labels.csv (e.g. {missing[:3]})")
    rows = np.array([row_of[int(k)] for k in ecg_id])
    return EcgSet(ecg_id, np.concatenate(xs), labels["y"][rows], labels["age"][rows], labels["sex"][rows],
                  labels["split"][rows])


# --------------------------------------------------------------------------------------- official layout
def superclass_map(scp_statements_csv: str | Path) -> dict[str, str]:
    """SCP code -> diagnostic superclass, for diagnostic statements (as in the PTB-XL benchmark)."""
    import pandas as pd
    agg = pd.read_csv(scp_statements_csv, index_col=0)
    agg = agg[agg["diagnostic"] == 1]
    return {str(code): str(cls) for code, cls in agg["diagnostic_class"].items() if isinstance(cls, str)}


def superclasses_of(scp_codes: dict[str, float], code_to_class: dict[str, str]) -> list[str]:
    """Benchmark rule: every diagnostic code present (any likelihood) contributes its superclass."""
    return sorted({code_to_class[c] for c in scp_codes if c in code_to_class})


def load_official(root: str | Path, rate: int = 100, folds: tuple[int, ...] | None = None) -> EcgSet:
    """Load the PhysioNet PTB-XL layout (ptbxl_database.csv, scp_statements.csv, records100|records500).

    500 Hz records are brought to 100 Hz with the same polyphase resampler the device uses (scipy
    resample_poly 1:5); the 100 Hz files are PTB-XL's own downsampling.
    Split: folds 1-8 'train', 9 'val', 10 'test'.
    """
    import pandas as pd
    from scipy.signal import resample_poly
    r = Path(root)
    db_path, scp_path = r / "ptbxl_database.csv", r / "scp_statements.csv"
    for p in (db_path, scp_path):
        if not p.exists():
            raise DataError(f"{p} not found: expected the official PhysioNet PTB-XL layout")
    if rate not in (100, 500):
        raise DataError(f"rate must be 100 or 500, got {rate}")
    db = pd.read_csv(db_path, index_col="ecg_id")
    if folds is not None:
        db = db[db["strat_fold"].isin(folds)]
    cmap = superclass_map(scp_path)
    col = "filename_lr" if rate == 100 else "filename_hr"
    ids, xs, ys, ages, sexes, splits = [], [], [], [], [], []
    for ecg_id, row in db.iterrows():
        rec_path = r / row[col]
        if not Path(str(rec_path) + ".hea").exists():
            raise DataError(f"record {rec_path}.hea listed in ptbxl_database.csv is missing")
        try:
            uv = read_wfdb_uv(rec_path).leads_uv(LEADS)      # the device's one WFDB reader (NaN = missing)
        except RecordError as e:
            raise DataError(str(e)) from None
        if rate == 500:
            uv = resample_poly(uv, 1, 5, axis=0)
        if uv.shape != (N_SAMPLES, 12):
            raise DataError(f"record {rec_path} has shape {uv.shape}, expected ({N_SAMPLES}, 12) after resampling")
        codes = ast.literal_eval(row["scp_codes"])
        sc = superclasses_of(codes, cmap)
        ids.append(int(ecg_id)); xs.append(uv)
        ys.append([1.0 if c in sc else 0.0 for c in CLASSES])
        ages.append(float(row["age"]) if pd.notna(row["age"]) else np.nan)
        sexes.append(float(row["sex"]) if pd.notna(row["sex"]) else np.nan)
        f = int(row["strat_fold"])
        splits.append("train" if f <= 8 else ("val" if f == 9 else "test"))
    if not ids:
        raise DataError(f"no records selected in {r}")
    return EcgSet(np.array(ids), np.stack(xs), np.array(ys, dtype=np.float32), np.array(ages), np.array(sexes),
                  np.array(splits))


# ------------------------------------------------------------------------------------------ to the model
def demographics_matrix(age: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Per-record contract demographics (n, 4) float32 via the device's demographics_vector."""
    out = np.zeros((len(age), 4), dtype=np.float32)
    for k, (a, s) in enumerate(zip(age, sex)):
        out[k] = demographics_vector(None if np.isnan(a) else float(a), None if np.isnan(s) else int(s))
    return out


def to_model_inputs(ds: EcgSet, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(ecg (n,1000,12) float32 mV after the contract's baseline removal/clip, demographics (n,4))."""
    ecg = np.empty((len(ds), N_SAMPLES, 12), dtype=np.float32)
    for s in range(0, len(ds), batch):
        ecg[s:s + batch] = make_model_input(ds.x_uv[s:s + batch])
    return ecg, demographics_matrix(ds.age, ds.sex)


def load_dataset(path: str | Path, splits: tuple[str, ...] | None = None) -> EcgSet:
    """Either layout: a shard directory (manifest.json + labels.csv) or the official PhysioNet one
    (ptbxl_database.csv; 100 Hz files, folds 1-8 'train', 9 'val', 10 'test')."""
    p = Path(path)
    if (p / "ptbxl_database.csv").exists():
        ds = load_official(p, rate=100)
        if splits is not None:
            ds = ds.subset(np.isin(ds.split, list(splits)))
            if len(ds) == 0:
                raise DataError(f"no records for splits {splits} in {p}")
        return ds
    return load_shards(p, splits=splits)
