"""The raw 10 s strip as a WFDB record (format 16), written and read without the wfdb library.

Why: the wfdb package imports pandas (and scipy), ~40 MB of resident memory the daemon would carry
only to write one small, fixed-layout file per result (issue 17). WFDB stays the format (any WFDB
tool, PhysioNet's viewers and the wfdb package itself read these strips); this module writes exactly
the bytes `wfdb.wrsamp` writes for this layout, checked byte for byte against the wfdb package in
tests/test_storage_wfdb_strip.py; strips are read back by the appliance's one WFDB reader
(firmware_bridge.records.read_wfdb_uv), equal to `wfdb.rdrecord` bit for bit (same test).

Layout: 12 leads in `firmware_bridge.leads.LEADS` order, format 16 (little-endian int16, samples
interleaved), gain 1000/mV (1 uV per unit, range +/-32.767 mV), baseline 0, one .dat file. Missing
samples (NaN) are stored as WFDB's reserved value -32768 and read back as NaN.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: WFDB format 16's reserved "no sample" value.
MISSING = -32768
UV_PER_LSB = 1.0
ADC_GAIN = 1000.0 / UV_PER_LSB           # units per mV


def _fs_text(fs: float) -> str:
    """The sampling frequency as wfdb writes it (an integral float without '.0')."""
    fs = float(fs)
    return str(int(fs)) if round(fs, 8) == float(int(fs)) else str(fs)


def digital(uv: np.ndarray) -> np.ndarray:
    """Microvolts -> int16 units (1 uV), clipped to +/-32767; NaN -> MISSING."""
    x = np.asarray(uv, dtype=np.float64)
    nan = np.isnan(x)
    d = np.clip(np.round(np.where(nan, 0.0, x) / UV_PER_LSB), -32767, 32767).astype(np.int16)
    d[nan] = MISSING
    return d


def header_text(name: str, d: np.ndarray, fs: float, leads: tuple[str, ...], comments: list[str]) -> str:
    """The .hea text wfdb.wrsamp writes for this layout (initial value and 16-bit checksum per signal)."""
    n, ch = d.shape
    sums = (np.sum(d.astype(np.int64), axis=0) % 65536) if n else np.zeros(ch, dtype=np.int64)
    lines = [f"{name} {ch} {_fs_text(fs)} {n}"]
    for i, lead in enumerate(leads):
        init = int(d[0, i]) if n else 0
        lines.append(f"{name}.dat 16 {ADC_GAIN}(0)/mV 16 0 {init} {int(sums[i])} 0 {lead}")
    lines += [f"# {c}" for c in comments]
    return "\n".join(lines) + "\n"


def write_strip(directory: str | os.PathLike, name: str, uv: np.ndarray, fs: float, leads: tuple[str, ...],
                comments: list[str] | None = None) -> tuple[Path, Path]:
    """Write <directory>/<name>.hea and .dat (plain writes; the caller fsyncs and renames into place)."""
    d = digital(uv)
    if d.ndim != 2 or d.shape[1] != len(leads):
        raise ValueError(f"strip must be (n, {len(leads)}) microvolts, got {d.shape}")
    directory = Path(directory)
    dat, hea = directory / f"{name}.dat", directory / f"{name}.hea"
    dat.write_bytes(d.astype("<i2").tobytes())
    hea.write_text(header_text(name, d, fs, leads, comments or []), encoding="utf-8")
    return hea, dat


def read_strip(base: str | os.PathLike) -> tuple[np.ndarray, float, list[str]]:
    """<base>.hea/.dat -> ((n, ch) microvolts, NaN = missing; fs; signal names).

    Read by the appliance's one WFDB reader (firmware_bridge.records.read_wfdb_uv: numpy for format 16,
    no wfdb/pandas import), so a stored strip means the same signal everywhere; equals
    `wfdb.rdrecord(base).p_signal * 1000` for these files (tested). A missing strip is FileNotFoundError."""
    from firmware_bridge.records import read_wfdb_uv
    base = Path(base)
    if not base.with_suffix(".hea").exists():
        raise FileNotFoundError(f"{base}.hea: no stored strip")
    rec = read_wfdb_uv(base)
    return rec.signals_uv, float(rec.fs), list(rec.sig_names)
