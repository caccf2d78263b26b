"""The 12-lead strip on the wire (`ecg.strip/1`), written once: encode on the device, decode + verify anywhere.

Why this shape:
- Only the 8 measured channels travel (I, II, V1..V6, the ADS1298's own channels, firmware_bridge.samples.
  CHANNELS). The four other limb leads are exact linear combinations (III = II - I, aVR = -(I+II)/2,
  aVL = I - II/2, aVF = II - I/2); sending them would add half the bytes and no information, and a receiver
  derives them with the same function the device uses (firmware_bridge.samples.derive_leads).
- Integer microvolts (1 uV per LSB, like the device's stored WFDB strip): an ECG is read to ~10 uV, so 1 uV
  loses nothing a reader can see, and integers make the checksum and the round trip exact.
- Per-lead first differences, then zlib: consecutive samples at 500 Hz differ by a few uV, so the
  differences are small numbers of low entropy that deflate well; int16 when every difference fits (the
  usual case), int32 otherwise (pacing spikes, saturation, a large electrode offset on the first sample).
- A SHA-256 of the raw integers (not of the compressed bytes) proves the decoded samples are the ones the
  device measured, whatever happened to the encoding in between.
- Missing samples (a stream gap, NaN on the device) are the integer MISSING = -2**31, as WFDB marks them with
  its format's lowest value: never a made-up number. Decoded, they are NaN (arrays) or null (JSON lists).

Data layout: `data` = base64( zlib( concat over `leads` (lead-major) of the little-endian `dtype` first
differences d[0] = x[0], d[k] = x[k] - x[k-1] ) ), as int32 taken modulo 2**32 (two's complement wrap: a step
into or out of MISSING does not fit otherwise); the receiver sums them and wraps to int32. `sha256` = hex SHA-256 of concat over `leads` of the
little-endian int32 samples x (absolute, not differences). docs/mqtt.md has the prose.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_bridge.samples import CHANNELS, LEADS, derive_leads

FORMAT = "ecg-edge.strip/1"
ENCODING = "delta-zlib-base64"
#: Independent leads carried on the wire, in wire order (the front end's measured channels).
WIRE_LEADS: tuple[str, ...] = CHANNELS
#: Column of each wire lead in a 12-lead (LEADS order) array.
_WIRE_COLUMNS = tuple(LEADS.index(name) for name in WIRE_LEADS)
LSB_UV = 1.0
#: A missing sample (NaN on the device) on the wire.
MISSING = -(2 ** 31)
#: Receivers refuse anything larger (a 10 s strip at 500 Hz is 40,000 samples): 60 s at 1 kHz, 8 leads.
MAX_SAMPLES_TOTAL = 8 * 60 * 1000
_I32 = (-(2 ** 31), 2 ** 31 - 1)


class StripError(ValueError):
    """A strip payload that cannot be trusted: malformed, inconsistent, oversized, or failing its checksum."""


@dataclass(frozen=True)
class Strip:
    """A decoded, verified strip: the measured leads in integer microvolts at the native rate."""

    result_id: str
    run_id: str
    fs: float
    leads: tuple[str, ...]          # wire lead names, WIRE_LEADS
    samples_uv: np.ndarray          # (n_samples, len(leads)) int32 microvolts; MISSING = no sample
    start_index: int
    device_time_us: int | None
    t0: str                         # ISO UTC time of the first sample (device wall clock, estimated)

    @property
    def n_samples(self) -> int:
        return int(self.samples_uv.shape[0])

    @property
    def n_missing(self) -> int:
        return int(np.count_nonzero(self.samples_uv == MISSING))

    def twelve_lead_uv(self) -> np.ndarray:
        """(n, 12) float64 microvolts in the standard order (I, II, III, aVR, aVL, aVF, V1..V6); NaN = missing
        (a derived lead is missing where either of its measured leads is)."""
        x = self.samples_uv.astype(np.float64)
        x[self.samples_uv == MISSING] = np.nan
        return derive_leads(x)

    def leads_uv(self) -> dict[str, list[float | None]]:
        """{lead name: samples in uV, None = missing} for all 12 leads (what the dashboard API serves)."""
        twelve = self.twelve_lead_uv()
        return {name: [None if v != v else v for v in twelve[:, i].tolist()] for i, name in enumerate(LEADS)}


def quantise_uv(native_uv: np.ndarray) -> np.ndarray:
    """(n, 12) or (n, 8) microvolts -> (n, 8) int32 wire leads (rounded to 1 uV; NaN -> MISSING). Raises
    StripError on +-inf or a value outside the int32 range."""
    x = np.asarray(native_uv, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] not in (8, 12) or x.shape[0] < 1:
        raise StripError(f"strip must be (n, 12) leads or (n, 8) channels with n >= 1, got {x.shape}")
    if x.shape[1] == 12:
        x = x[:, _WIRE_COLUMNS]
    if np.isinf(x).any():
        raise StripError("strip holds infinite samples; nothing to encode faithfully")
    missing = np.isnan(x)
    q = np.round(np.where(missing, 0.0, x) / LSB_UV)
    if q.min() <= MISSING or q.max() > _I32[1]:
        raise StripError("strip sample outside the int32 microvolt range")
    q[missing] = MISSING
    return q.astype(np.int32)


def samples_sha256(samples_uv: np.ndarray) -> str:
    """The checksum: SHA-256 of the lead-major little-endian int32 samples."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(samples_uv, dtype="<i4").T).tobytes()).hexdigest()


def encode_strip(native_uv: np.ndarray, fs: float, *, result_id: str, run_id: str, start_index: int,
                 device_time_us: int | None, t0: str, level: int = 6) -> dict[str, Any]:
    """The `strip` object of an `ecg.strip/1` message (the uplink adds the envelope: msg_id, device_id, ...)."""
    samples = quantise_uv(native_uv)
    deltas = np.diff(samples.astype(np.int64), axis=0, prepend=0)           # d[0] = x[0]
    dtype = "int16" if deltas.size and np.abs(deltas).max() <= 32767 else "int32"
    deltas = _wrap_i32(deltas)                                                # exact for int16, mod 2**32 else
    raw = np.ascontiguousarray(deltas.T.astype("<i2" if dtype == "int16" else "<i4")).tobytes()
    return {"format": FORMAT, "result_id": str(result_id), "run_id": str(run_id), "fs": float(fs),
            "leads": list(WIRE_LEADS), "derived_leads": [n for n in LEADS if n not in WIRE_LEADS],
            "units": "uV", "lsb_uv": LSB_UV, "n_samples": int(samples.shape[0]),
            "start_index": int(start_index),
            "device_time_us": None if device_time_us is None else int(device_time_us), "t0": str(t0),
            "encoding": ENCODING, "dtype": dtype,
            "data": base64.b64encode(zlib.compress(raw, level)).decode("ascii"),
            "sha256": samples_sha256(samples)}


def _wrap_i32(v: np.ndarray) -> np.ndarray:
    """int64 -> the int32 value it is congruent to modulo 2**32 (two's complement)."""
    return ((v + 2 ** 31) % 2 ** 32) - 2 ** 31


def decode_strip(strip: dict[str, Any]) -> Strip:
    """Decode and verify the `strip` object of an `ecg.strip/1` message. Raises StripError, never anything else."""
    if not isinstance(strip, dict):
        raise StripError(f"strip must be an object, got {type(strip).__name__}")
    try:
        return _decode(strip)
    except StripError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, zlib.error, binascii.Error) as exc:
        raise StripError(f"malformed strip: {type(exc).__name__}: {exc}") from None


def _decode(s: dict[str, Any]) -> Strip:
    if s.get("format") != FORMAT:
        raise StripError(f"unsupported strip format {s.get('format')!r} (expected {FORMAT})")
    if s.get("encoding") != ENCODING:
        raise StripError(f"unsupported encoding {s.get('encoding')!r} (expected {ENCODING})")
    leads = tuple(s["leads"])
    if leads != WIRE_LEADS:
        raise StripError(f"leads must be {list(WIRE_LEADS)}, got {list(leads)}")
    if s.get("units") != "uV" or float(s.get("lsb_uv", 0)) != LSB_UV:
        raise StripError(f"only units uV at lsb_uv {LSB_UV} are defined, got {s.get('units')!r} / {s.get('lsb_uv')!r}")
    fs = float(s["fs"])
    n = s["n_samples"]
    if not (isinstance(n, int) and not isinstance(n, bool)) or n < 1 or n * len(leads) > MAX_SAMPLES_TOTAL:
        raise StripError(f"n_samples {n!r} out of range (1..{MAX_SAMPLES_TOTAL // len(leads)})")
    if not 1.0 <= fs <= 20000.0:
        raise StripError(f"fs {fs} out of range")
    width = {"int16": 2, "int32": 4}.get(s.get("dtype"))
    if width is None:
        raise StripError(f"dtype must be int16 or int32, got {s.get('dtype')!r}")
    expected = n * len(leads) * width
    packed = base64.b64decode(s["data"], validate=True)
    d = zlib.decompressobj()
    raw = d.decompress(packed, expected + 1)         # bounded: a zip bomb stops at expected + 1 bytes
    if len(raw) != expected or d.unconsumed_tail or not d.eof:
        raise StripError(f"data decompresses to {len(raw)}{'+' if d.unconsumed_tail else ''} bytes, "
                         f"expected {expected} ({n} samples x {len(leads)} leads x {width})")
    deltas = np.frombuffer(raw, dtype="<i2" if width == 2 else "<i4").reshape(len(leads), n).astype(np.int64)
    samples = np.ascontiguousarray(_wrap_i32(np.cumsum(deltas, axis=1)).T.astype(np.int32))
    if samples_sha256(samples) != str(s["sha256"]).lower():
        raise StripError("checksum mismatch: the decoded samples are not the ones the device sent")
    dt = s.get("device_time_us")
    return Strip(result_id=str(s["result_id"]), run_id=str(s["run_id"]), fs=fs, leads=leads, samples_uv=samples,
                 start_index=int(s["start_index"]), device_time_us=None if dt is None else int(dt), t0=str(s["t0"]))


def decode_message(message: dict[str, Any]) -> Strip:
    """Validate a whole `ecg.strip/1` message against its JSON Schema, then decode and verify its strip."""
    from edge_app.uplink.schemas import SchemaError, validate
    try:
        validate(message, "strip")
    except SchemaError as exc:
        raise StripError(f"not an ecg.strip/1 message: {exc}") from None
    return decode_strip(message["strip"])
