"""The one WFDB reader: a record on disk -> microvolts, with one rule for units and one for missing samples.

Replay, the front-end simulator, `ecg-edge measure`, the self-test and training all read records here,
so a record means the same signal everywhere.

- Units: every signal is converted from its stored digital values with the header's own gain and
  baseline, then from the header's physical unit (mV, uV/µV, V, nV; blank = mV, the WFDB default)
  to microvolts. A unit that is not a voltage is refused, never guessed.
- Missing samples: WFDB stores "no sample here" as a reserved digital value (-32768 in format 16).
  Those become NaN, never zero: a gap filled with zeros looks like a flat, clean signal and would be
  analysed as one. What to do with NaN is the caller's decision (the quality gate refuses the window).
- Bad records: every problem is a RecordError whose message names the file, says what is wrong and
  how to fix it (no "list index out of range" from deep inside a parser).

Why the header is checked here before the wfdb library reads it: the library reports a header with
too few signal lines, a text file posing as a header or a short .dat file as IndexError / ValueError
with messages that name neither the file nor the fix.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .leads import canonical_lead

#: Physical unit (case-insensitive, µ/μ written as u) -> microvolts per unit.
UNIT_TO_UV: dict[str, float] = {"mv": 1000.0, "uv": 1.0, "v": 1e6, "nv": 1e-3}
#: WFDB's default ADC gain when a header gives none or 0 (WFDB header spec).
DEFAULT_GAIN = 200.0
#: Bytes per sample of each WFDB storage format and the digital value that marks a missing sample
#: (WFDB signal-file formats; the same tables as the wfdb library, kept here so reading needs no wfdb).
BYTES_PER_SAMPLE: dict[str, float] = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5,
                                      "310": 4 / 3, "311": 4 / 3, "508": 0, "516": 0, "524": 0}
INVALID_SAMPLE_VALUE: dict[str, int] = {"80": -128, "508": -128, "310": -512, "311": -512, "212": -2048,
                                        "16": -32768, "61": -32768, "160": -32768, "516": -32768,
                                        "24": -8388608, "524": -8388608, "32": -2147483648}
_EXTENSIONS = (".hea", ".dat", ".atr")     # a record is named without extension; these point at it


class RecordError(ValueError):
    """A WFDB record that cannot be read as asked. The message names the file, the problem and the fix."""


@dataclass(frozen=True)
class WfdbRecord:
    """A record read by read_wfdb_uv. signals_uv is (n, channels) float64 microvolts; NaN = missing sample."""
    path: str                      # record path without extension
    fs: float
    signals_uv: np.ndarray
    sig_names: tuple[str, ...]     # as written in the header
    units: tuple[str, ...]         # as written in the header

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def n_samples(self) -> int:
        return int(self.signals_uv.shape[0])

    @property
    def missing_samples(self) -> int:
        """Samples the record marks as missing (NaN), over all channels."""
        return int(np.count_nonzero(np.isnan(self.signals_uv)))

    def leads_uv(self, wanted: Sequence[str]) -> np.ndarray:
        """(n, len(wanted)) microvolts with the columns in `wanted` order, found by lead name.

        Names are matched exactly (case-insensitive, with real synonyms such as AVR for aVR): a signal
        named 'X6' is not V6, and a record without one of the wanted leads is refused with the list
        of what it has rather than analysed in an assumed order.
        """
        canon = [canonical_lead(n) for n in self.sig_names]
        cols = []
        for lead in wanted:
            hits = [i for i, c in enumerate(canon) if c == lead]
            if len(hits) > 1:
                raise RecordError(f"{self.path}.hea: lead {lead} appears {len(hits)} times "
                                  f"({', '.join(self.sig_names[i] for i in hits)}); keep one signal per lead")
            cols.append(hits[0] if hits else None)
        missing = [lead for lead, c in zip(wanted, cols) if c is None]
        if missing:
            unknown = [n for n, c in zip(self.sig_names, canon) if c is None]
            hint = (f"; signal name(s) {', '.join(map(repr, unknown))} are not standard lead names - "
                    f"rename them in the header if they are {', '.join(missing)}" if unknown else "")
            raise RecordError(f"{self.path}.hea: lacks lead(s) {', '.join(missing)} (needs "
                              f"{', '.join(wanted)}; has {', '.join(self.sig_names) or 'no signals'}){hint}")
        return self.signals_uv[:, cols]


def record_base(path: str | os.PathLike) -> Path:
    """'x/100', 'x/100.hea', 'x/100.dat' or 'x/100.atr' -> Path('x/100') (WFDB names records without extension)."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in _EXTENSIONS else p


def unit_scale(unit: str | None) -> float | None:
    """Microvolts per physical unit, or None for a unit that is not a voltage. Blank means mV."""
    u = (unit or "mV").strip().replace("µ", "u").replace("μ", "u").lower()
    return UNIT_TO_UV.get(u)


# ------------------------------------------------------------------------------------------ header
#: FS[/COUNTER_FREQ[(BASE_COUNTER)]] on the record line: plain decimals, as WFDB writes them.
_FS_FIELD = re.compile(r"^(\d+\.?\d*|\.\d+)(?:/\d+\.?\d*)?(?:\(-?\d+\.?\d*\))?$")


@dataclass(frozen=True)
class _HeaderLines:
    n_sig: int
    fs: float
    n_samples: int | None
    signal_lines: list[list[str]]


def _check_header(base: Path) -> _HeaderLines:
    """Read the .hea text and check what the wfdb library would otherwise trip over."""
    hea = Path(str(base) + ".hea")
    where = str(hea)
    if base.is_dir() and not hea.is_file():
        inside = sorted(base.glob("*.hea"))[:3]
        example = ", ".join(str(h.with_suffix("")) for h in inside) or f"{base}/NAME for {base}/NAME.hea"
        raise RecordError(f"{base}: is a directory, not a record; give a record in it (path without extension), "
                          f"e.g. {example}")
    if not hea.is_file():
        raise RecordError(f"{where}: not found (no WFDB header, so no WFDB record at {base}); give the record "
                          f"path without extension (e.g. records500/00000/00001_hr for 00001_hr.hea + 00001_hr.dat)")
    raw = hea.read_bytes()
    if b"\x00" in raw:
        raise RecordError(f"{where}: is a binary file, not a WFDB header (a .hea is a short text file); "
                          f"check that the .hea and .dat were not swapped or damaged")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise RecordError(f"{where}: is empty; a WFDB header starts with 'NAME N_SIGNALS FS N_SAMPLES'")
    rec = lines[0]
    example = f"'NAME N_SIGNALS FS N_SAMPLES', e.g. '{base.name} 12 500 5000'"

    def bad_line(problem: str) -> RecordError:
        return RecordError(f"{where}: first line {' '.join(rec)[:60]!r} is not a WFDB record line ({problem}); "
                           f"expected {example} - is this really a WFDB header?")

    if "/" in rec[0]:
        raise RecordError(f"{where}: is a multi-segment record, which is not supported; join the segments "
                          f"into one record (wfdb.wrsamp) first")
    if len(rec) < 2 or not rec[1].lstrip("-").isdigit():
        raise bad_line("the second field must be the number of signals")
    n_sig = int(rec[1])
    if n_sig < 1:
        raise RecordError(f"{where}: declares {n_sig} signals; a record needs at least one")
    fs = 250.0                                        # WFDB default when the field is absent
    if len(rec) > 2:
        m = _FS_FIELD.match(rec[2])
        if m is None:
            raise bad_line(f"sampling frequency {rec[2]!r} is not a plain decimal number of Hz")
        fs = float(m.group(1))
        if not math.isfinite(fs) or fs <= 0:
            raise RecordError(f"{where}: sampling frequency {rec[2]} Hz; a record needs a rate above 0 Hz "
                              f"(fix the third field of the first line: {example})")
    n_samples = None
    if len(rec) > 3:
        if not rec[3].isdigit():
            raise bad_line(f"number of samples {rec[3]!r} is not a whole number")
        n_samples = int(rec[3])
    sig = lines[1:]
    if len(sig) < n_sig:
        raise RecordError(f"{where}: declares {n_sig} signals but has {len(sig)} signal line(s); "
                          f"add the missing lines or set the signal count on the first line to {len(sig)}")
    if len(sig) > n_sig:
        raise RecordError(f"{where}: declares {n_sig} signals but has {len(sig)} signal lines; set the signal count "
                          f"on the first line to {len(sig)} or remove the extra lines")
    for k, s in enumerate(sig):
        if len(s) < 2:
            raise RecordError(f"{where}: signal line {k + 1} {' '.join(s)!r} needs at least 'FILE FORMAT'")
    return _HeaderLines(n_sig, fs, n_samples, sig)


def _check_data_files(base: Path, h: _HeaderLines) -> None:
    """Each .dat must exist, be non-empty and hold as many samples as the header promises."""
    per_file: dict[str, list[str]] = {}
    for s in h.signal_lines:
        per_file.setdefault(s[0], []).append(s[1])
    for fname, fmts in per_file.items():
        if fname == "~":
            continue                                  # '~' = signal not stored (WFDB): all missing
        dat = base.parent / fname
        if not dat.is_file():
            raise RecordError(f"{dat}: missing; the header {base}.hea names it as the signal file "
                              f"(copy it next to the header)")
        size = dat.stat().st_size
        if size == 0:
            raise RecordError(f"{dat}: is empty (0 bytes); the record was not copied completely - copy it again")
        fmt = fmts[0].split("x")[0].split(":")[0].split("+")[0]
        offset = int(fmts[0].split("+")[1]) if "+" in fmts[0] and fmts[0].split("+")[1].isdigit() else 0
        bps = BYTES_PER_SAMPLE.get(fmt)
        if bps is None:
            raise RecordError(f"{base}.hea: storage format {fmt!r} of {fname} is not a WFDB format "
                              f"(e.g. 16 or 212)")
        if h.n_samples and bps:
            need = offset + math.ceil(h.n_samples * len(fmts) * bps)
            if size < need:
                have = int((size - offset) / (len(fmts) * bps)) if size > offset else 0
                raise RecordError(f"{dat}: is truncated: {size} bytes, the header promises {h.n_samples} samples x "
                                  f"{len(fmts)} signal(s) in format {fmt} = {need} bytes (only {have} whole "
                                  f"samples, {have / h.fs:.2f} s, are there); copy the record again")


# ------------------------------------------------------------------------------------------ reader
@dataclass(frozen=True)
class _Stored:
    """What a record stores, before conversion: digital samples and the header's per-signal fields."""
    digital: np.ndarray            # (n, channels) integers as stored
    fmt: tuple[str, ...]
    gain: tuple[float, ...]
    baseline: tuple[int, ...]
    units: tuple[str, ...]
    names: tuple[str, ...]
    fs: float


#: GAIN[(BASELINE)][/UNITS] of a signal line (units: the characters WFDB allows).
_GAIN_FIELD = re.compile(r"^(-?\d*\.?\d*(?:e[+-]?\d+)?)(?:\((-?\d+)\))?(?:/([\w^\-?%/]+))?$")
_INT_FIELD = re.compile(r"^-?\d+$")


def _read_fmt16(base: Path, h: _HeaderLines) -> _Stored | None:
    """The common case read with numpy alone: every signal in format 16 in one .dat, no sample multiple,
    skew or byte offset, sample count given. None for anything else (the wfdb library reads it then).

    Why: this is how PTB-XL and the appliance's own strips are stored; reading them without importing
    wfdb (and pandas behind it) keeps `ecg-edge replay` and training small and fast. The fields follow the
    WFDB header rules exactly (gain 0 or absent = 200, baseline absent = ADC zero, unit absent = mV)."""
    files = {s[0] for s in h.signal_lines}
    if h.n_samples is None or len(files) != 1 or any(s[1] != "16" for s in h.signal_lines):
        return None
    gains, baselines, units, names = [], [], [], []
    for s in h.signal_lines:
        m = _GAIN_FIELD.match(s[2]) if len(s) > 2 else None
        if m is None or not m.group(1) or m.group(1) in ("-", "."):
            return None
        ints = []
        for tok in s[3:8]:
            if not _INT_FIELD.match(tok):
                break
            ints.append(int(tok))
        name = " ".join(s[3 + len(ints):])
        if not name or name[0] in "0123456789+-.":         # ambiguous fields: let wfdb's own parser decide
            return None
        adc_zero = ints[1] if len(ints) > 1 else 0
        gain = float(m.group(1))
        gains.append(gain if gain != 0 else DEFAULT_GAIN)
        baselines.append(int(m.group(2)) if m.group(2) is not None else adc_zero)
        units.append(m.group(3) or "mV")
        names.append(name)
    n_sig = len(h.signal_lines)
    digital = np.fromfile(base.parent / files.pop(), dtype="<i2", count=h.n_samples * n_sig)
    return _Stored(digital.reshape(h.n_samples, n_sig), ("16",) * n_sig, tuple(gains), tuple(baselines),
                   tuple(units), tuple(names), h.fs)


def _header_units(h: _HeaderLines) -> tuple[str, ...] | None:
    """Each signal's unit as written in the header (blank = mV), or None if a gain field does not parse."""
    units = []
    for s in h.signal_lines:
        m = _GAIN_FIELD.match(s[2]) if len(s) > 2 else None
        if m is None:
            return None
        units.append(m.group(3) or "mV")
    return tuple(units)


def _read_with_wfdb(base: Path) -> _Stored:
    """Any other WFDB record, read by the wfdb library (its exceptions become RecordError)."""
    import wfdb  # only for the formats the numpy path does not read
    try:
        rec = wfdb.rdrecord(str(base), physical=False)
    except Exception as e:  # noqa: BLE001 - the library raises many types; name the file and the problem
        raise RecordError(f"{base}.hea: not a readable WFDB record ({type(e).__name__}: {e}); check the header "
                          f"fields against the .dat file") from None
    if rec.d_signal is None or rec.d_signal.size == 0 or rec.d_signal.shape[0] == 0:
        raise RecordError(f"{base}: the record holds no samples; record at least one sample per signal")
    n_ch = rec.d_signal.shape[1]
    names = tuple(str(n) for n in (rec.sig_name or [f"ch{i}" for i in range(n_ch)]))
    if len(names) != n_ch or len(rec.adc_gain or []) != n_ch:
        raise RecordError(f"{base}.hea: describes {len(names)} signals but the data has {n_ch} columns; "
                          f"make the signal lines match the .dat file")
    return _Stored(rec.d_signal, tuple(str(f) for f in rec.fmt), tuple(g if g else DEFAULT_GAIN for g in rec.adc_gain),
                   tuple(rec.baseline), tuple(str(u) for u in (rec.units or ["mV"] * n_ch)), names, float(rec.fs))


def _to_microvolts(base: Path, st: _Stored) -> WfdbRecord:
    """The one rule: (digital - baseline) / gain in the header's unit -> microvolts; invalid samples -> NaN."""
    scale = []
    for name, unit in zip(st.names, st.units):
        factor = unit_scale(unit)
        if factor is None:
            raise RecordError(f"{base}.hea: signal {name} is in {unit!r}, not a voltage; an ECG signal must be "
                              f"in mV, uV or V (fix the unit after the gain, e.g. 1000.0(0)/mV)")
        scale.append(factor)
    gain = np.asarray(st.gain, dtype=np.float64)
    if not np.all(np.isfinite(gain)):
        raise RecordError(f"{base}.hea: an ADC gain is not a finite number ({list(st.gain)}); "
                          f"write the gain as e.g. 1000.0(0)/mV")
    baseline = np.asarray(st.baseline, dtype=np.float64)
    # Same arithmetic as PTB-XL's own conversion, so training reads exactly the same numbers as before.
    uv = (st.digital.astype(np.float64) - baseline) / gain * np.asarray(scale)
    for ch, fmt in enumerate(st.fmt):
        invalid = INVALID_SAMPLE_VALUE.get(fmt)    # format 8 (first differences) has no "invalid" code
        if invalid is not None:
            uv[st.digital[:, ch] == invalid, ch] = np.nan
    return WfdbRecord(path=str(base), fs=st.fs, signals_uv=uv, sig_names=st.names, units=st.units)


def read_wfdb_uv(path: str | os.PathLike) -> WfdbRecord:
    """Read a WFDB record (path with or without .hea/.dat) -> WfdbRecord in microvolts, NaN = missing.

    Raises RecordError (never a library exception) for a missing, malformed, truncated or empty record,
    a rate of 0 Hz or a signal whose unit is not a voltage.
    """
    base = record_base(path)
    h = _check_header(base)
    _check_data_files(base, h)
    stored = _read_fmt16(base, h)
    if stored is None:
        stored = _read_with_wfdb(base)
        units = _header_units(h)
        if units is not None and len(units) == len(stored.units):     # wfdb reads 'µV' as 'V' (10^6 off)
            stored = dataclasses.replace(stored, units=units)
    if stored.digital.shape[0] == 0:
        raise RecordError(f"{base}: the record holds no samples; record at least one sample per signal")
    return _to_microvolts(base, stored)
