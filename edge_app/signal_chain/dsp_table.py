"""The design table of edge_app.signal_chain.dsp: which designs, and how it is (re)generated.

Kept apart from dsp.py so that dsp (imported by the resampler, the gate and the model contract) never
imports them back: this module reads the chain's own constants (conditioning's anti-alias band) to list
every design the chain asks for at the tabulated rates. Regenerate after adding a filter:

    python -m edge_app.signal_chain.dsp_table        # needs scipy.signal (a development tool)

tests/test_signal_dsp.py checks every entry against scipy.signal, bit for bit.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import dsp
from .conditioning import PASS_HZ, STOP_DB, STOP_HZ, _ratio
from .contract import FS_HZ


def table_requests() -> list[tuple[str, tuple]]:
    """Every design the chain asks for at the tabulated rates (the tests check each against scipy)."""
    reqs: list[tuple[str, tuple]] = []
    for fs in dsp.TABLE_RATES:
        hi45 = min(45.0, 0.45 * fs)
        hi40 = min(40.0, 0.45 * fs)
        reqs += [("butter", (2, (0.5, hi40), "bandpass", fs)), ("butter", (2, (20.0, hi45), "bandpass", fs)),
                 ("butter", (2, 0.7, "lowpass", fs)), ("butter", (2, 0.5, "highpass", fs)),
                 ("butter", (2, (5.0, min(18.0, 0.45 * fs)), "bandpass", fs)),
                 ("butter", (2, (1.0, min(30.0, 0.45 * fs)), "bandpass", fs))]      # rhythm_features VF band
        for f0 in (50.0, 60.0):
            if f0 < 0.45 * fs:
                reqs += [("iirnotch", (f0, 10.0, fs)), ("notch_sos", (f0, 30.0, fs))]
        if fs != FS_HZ:
            up, down = _ratio(fs, FS_HZ)
            fs_up = fs * up
            pass_hz = min(PASS_HZ, 0.4 * min(fs, FS_HZ))
            stop_hz = min(STOP_HZ, 0.5 * min(fs, FS_HZ))
            reqs.append(("kaiser_lowpass", (STOP_DB, pass_hz, stop_hz, fs_up, up)))
    return reqs


def design_by_name(kind: str, args: tuple) -> np.ndarray:
    """The design as the chain gets it (from the table, or computed and cached when not tabulated)."""
    fn = {"butter": dsp.butter_sos, "iirnotch": lambda *a: np.vstack(dsp.iirnotch_ba(*a)), "notch_sos": dsp.notch_sos,
          "kaiser_lowpass": dsp.kaiser_lowpass}[kind]
    return fn(*args)


def request_key(kind: str, args: tuple) -> str:
    if kind == "butter":
        order, wn, btype, fs = args
        wn_t = tuple(wn) if isinstance(wn, tuple) else (wn,)
        return dsp._key("butter", int(order), btype, float(fs), *wn_t)
    if kind == "kaiser_lowpass":
        return dsp._key(kind, *args[:4], int(args[4]))
    return dsp._key(kind, *args)


def write_table(path: Path = dsp.DESIGNS_PATH) -> int:
    """Compute every requested design with scipy.signal and write the table (exact float repr)."""
    import scipy
    designs = {request_key(kind, args): _compute_fresh(kind, args).tolist() for kind, args in table_requests()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"generated_by": "python -m edge_app.signal_chain.dsp_table",
                                "scipy": scipy.__version__, "designs": designs}) + "\n")
    dsp._table.cache_clear()
    return len(designs)


def _compute_fresh(kind: str, args: tuple) -> np.ndarray:
    """A design computed by scipy.signal now (ignores the table)."""
    from scipy import signal as sps
    if kind == "butter":
        order, wn, btype, fs = args
        return sps.butter(int(order), list(wn) if isinstance(wn, tuple) else wn, btype=btype, fs=float(fs),
                          output="sos")
    if kind == "iirnotch":
        return np.vstack(sps.iirnotch(*[float(a) for a in args[:2]], fs=float(args[2])))
    if kind == "notch_sos":
        return sps.tf2sos(*sps.iirnotch(float(args[0]), float(args[1]), fs=float(args[2])))
    stop_db, pass_hz, stop_hz, fs_up, up = args
    numtaps, beta = sps.kaiserord(stop_db, (stop_hz - pass_hz) / (0.5 * fs_up))
    numtaps |= 1
    return sps.firwin(numtaps, 0.5 * (pass_hz + stop_hz), window=("kaiser", beta), fs=fs_up) * up


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(f"wrote {write_table()} designs to {dsp.DESIGNS_PATH}")
