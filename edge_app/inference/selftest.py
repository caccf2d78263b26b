"""Device self-test: the shipped model must reproduce its golden outputs on the built-in real records.

Golden outputs were computed at export with the same LiteRT runtime on edge_app/data/records/*_lr and their
age/sex from records.json. A different result means a broken runtime, wrong signal chain or a corrupt model.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.inference.model import ModelError, load_model
from firmware_bridge.leads import LEADS
from firmware_bridge.records import read_wfdb_uv

RECORDS_DIR = Path(__file__).resolve().parents[1] / "data" / "records"


def read_record_uv(record_path: str | Path) -> np.ndarray:
    """WFDB record (no extension) -> (n, 12) float64 microvolts, LEADS order (the one WFDB reader)."""
    return read_wfdb_uv(record_path).leads_uv(LEADS)


def builtin_records() -> list[dict]:
    return json.loads((RECORDS_DIR / "records.json").read_text())["records"]


@dataclass
class SelfTestReport:
    ok: bool
    model_version: str = ""
    model_sha256: str = ""
    tolerance: float = 0.0
    max_abs_diff: float = float("nan")
    records: list[dict] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_selftest(manifest_path: str | Path, backend: str = "litert", num_threads: int = 1) -> SelfTestReport:
    t0 = time.perf_counter()
    try:
        model = load_model(manifest_path, backend=backend, num_threads=num_threads)
    except ModelError as e:
        return SelfTestReport(ok=False, error=str(e), seconds=time.perf_counter() - t0)
    m = model.manifest
    tol = float(m.get("golden_tolerance", 0.01))
    golden = m.get("golden") or []
    rep = SelfTestReport(ok=True, model_version=model.model_version, model_sha256=model.model_sha256, tolerance=tol)
    if not golden:
        rep.ok, rep.error = False, "manifest has no golden outputs"
        return rep
    worst = 0.0
    for g in golden:
        x = read_record_uv(RECORDS_DIR / g["record"])
        pred = model.predict(x, g.get("age"), g.get("sex"))
        got = np.array([pred.probabilities[c] for c in model.classes])
        want = np.array([g["probabilities"][c] for c in model.classes])
        diff = float(np.max(np.abs(got - want)))
        worst = max(worst, diff)
        rep.records.append({"record": g["record"], "max_abs_diff": diff, "ok": diff <= tol})
    rep.max_abs_diff = worst
    rep.ok = all(r["ok"] for r in rep.records)
    if not rep.ok:
        rep.error = f"golden outputs differ by up to {worst:.4f} > tolerance {tol}"
    rep.seconds = time.perf_counter() - t0
    return rep
