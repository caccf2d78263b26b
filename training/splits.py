"""Split val (PTB-XL strat_fold 9) into a FITTING half and a REPORTING half, by patient.

Why: calibration (Platt scaling) and operating thresholds are fitted on data; a figure measured on the same
records it was fitted on is optimistic. Model selection (recipe, epochs) uses all of val, as before; the
calibration and every threshold are fitted on the fitting half only, and every threshold-, probability- or
calibration-dependent figure in the report is measured on the reporting half. AUC does not depend on a
monotone per-class calibration, so it is also given on all of val.

The split is by patient (a patient's records all fall in one half) and needs no random state: a patient is in
the fitting half when the first byte of sha256("ptbxl-val-half:<patient_id>") is even.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

FIT, REPORT = "fit", "report"


def half_of_patient(patient_id: int) -> str:
    h = hashlib.sha256(f"ptbxl-val-half:{int(patient_id)}".encode()).digest()
    return FIT if h[0] % 2 == 0 else REPORT


def patient_ids(data_dir: str | Path, ecg_ids: np.ndarray) -> np.ndarray:
    """patient_id per ecg_id from labels.csv (shard layout) or ptbxl_database.csv (PhysioNet layout).
    Records without a patient id get their own ecg_id (each then forms its own 'patient')."""
    d = Path(data_dir)
    table: dict[int, int] = {}
    for name, id_col in (("labels.csv", "ecg_id"), ("ptbxl_database.csv", "ecg_id")):
        p = d / name
        if p.exists():
            with open(p, newline="") as f:
                for r in csv.DictReader(f):
                    pid = r.get("patient_id", "")
                    if pid not in ("", None):
                        table[int(r[id_col])] = int(float(pid))
            break
    return np.array([table.get(int(e), -int(e)) for e in ecg_ids], dtype=np.int64)


def val_halves(data_dir: str | Path, ecg_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fit_mask, report_mask) over the given val records."""
    pids = patient_ids(data_dir, ecg_ids)
    fit = np.array([half_of_patient(p) == FIT for p in pids], dtype=bool)
    return fit, ~fit
