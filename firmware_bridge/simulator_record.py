"""The record the simulator replays: read once, in microvolts, at the rate the host asks for.

Why a module of its own: what the simulator sends is only as good as the signal it starts from, and
that is checked here, before any pty exists: a record the simulator cannot replay faithfully (too few
samples, a rate that is not a whole number of at least FRAMES_PER_SECOND) is refused with a
SimulatorError naming the file and the fix.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from .protocol import FRAMES_PER_SECOND
from .records import RecordError, read_wfdb_uv
from .samples import CHANNELS
from .simulator_faults import SimulatorError


def load_record(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """WFDB record -> (fs, (n, 8) float64 microvolts in CHANNELS order), read by the appliance's one WFDB
    reader (records.read_wfdb_uv: channels found by name, units from the header, missing samples NaN).

    A missing sample cannot travel on the wire (a front end has no "no value" code), so frames holding one
    are not sent: the host sees a sequence gap, exactly as when a real front end loses frames.
    """
    try:
        rec = read_wfdb_uv(path)
        sig = rec.leads_uv(CHANNELS)
    except RecordError as e:
        raise SimulatorError(str(e)) from None
    if sig.shape[0] < 2:
        raise SimulatorError(f"{rec.path}: has {sig.shape[0]} sample(s); the simulator needs at least 2")
    if rec.fs != round(rec.fs) or not FRAMES_PER_SECOND <= rec.fs:
        raise SimulatorError(f"{rec.path}.hea: sampled at {rec.fs:g} Hz; the simulator replays whole rates of "
                             f"at least {FRAMES_PER_SECOND} Hz (resample the record first)")
    return int(round(rec.fs)), sig


def resample_to(sig_uv: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) along time; identity when rates match."""
    if fs_in == fs_out:
        return sig_uv.copy()
    from scipy.signal import resample_poly

    frac = Fraction(fs_out, fs_in)
    return resample_poly(sig_uv, frac.numerator, frac.denominator, axis=0)
