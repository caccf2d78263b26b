"""The raw 10 s strip as a WFDB record (format 16), written and read without the wfdb library.

Why: the wfdb package imports pandas (and scipy), ~40 MB of resident memory the daemon would carry
only to write one small, fixed-layout file per result (issue 17). WFDB stays the format (any WFDB
tool, PhysioNet's viewers and the wfdb package itself read these strips); this module writes exactly
the bytes `wfdb.wrsamp` writes for this layout and reads them back exactly as `wfdb.rdrecord` does —
both checked byte for byte / bit for bit against the wfdb package in tests/test_storage_wfdb_strip.py.

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


class StripFormatError(ValueError):
    """A strip file this reader does not understand (not written by write_strip's layout)."""


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
    """<base>.hea/.dat written by write_strip -> ((n, ch) microvolts, NaN = missing; fs; lead names).

    Equals `wfdb.rdrecord(base).p_signal * 1000` for these files (tested)."""
    base = Path(base)
    try:
        lines = [ln for ln in base.with_suffix(".hea").read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.startswith("#")]
        name, ch, fs_s, n = lines[0].split()[:4]
        ch, n, fs = int(ch), int(n), float(fs_s)
        sig = [ln.split() for ln in lines[1:1 + ch]]
        if len(sig) != ch or any(s[1] != "16" or s[2] != f"{ADC_GAIN}(0)/mV" for s in sig):
            raise StripFormatError(f"{base}.hea: not an ecg-edge strip (format 16, gain {ADC_GAIN}/mV)")
        leads = [s[8] if len(s) > 8 else f"ch{i}" for i, s in enumerate(sig)]
    except (OSError, IndexError, ValueError) as e:
        if isinstance(e, (StripFormatError, FileNotFoundError)):
            raise
        raise StripFormatError(f"{base}.hea: unreadable strip header ({e})") from None
    raw = np.frombuffer(base.with_suffix(".dat").read_bytes(), dtype="<i2")
    if raw.size != n * ch:
        raise StripFormatError(f"{base}.dat: {raw.size} samples, header says {n} x {ch}")
    d = raw.reshape(n, ch)
    p = d.astype(np.float64) / ADC_GAIN                  # wfdb's dac: (d - baseline) / gain, baseline 0
    p[d == MISSING] = np.nan
    return p * 1000.0, fs, leads
