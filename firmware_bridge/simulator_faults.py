"""The front-end simulator's faults: what can go wrong at a real ADS1298-class front end, on purpose.

Why a module of its own: the fault vocabulary (KIND[:ARG]@START[+DURATION]) is what testers, the demo
(`ecg-edge demo --fault`) and the soak speak; the signal-side effects are pure functions of stream time,
so they can be read and tested without a pty. The simulator (simulator.py) fires the one-shot faults
(drop, corrupt, reset, disconnect) itself, because they act on frames and on the link, not on samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .leads import CHANNELS, ELECTRODES, LIMB_ELECTRODES

FAULT_KINDS = ("electrode_off", "noise", "wander", "mains", "flat", "saturate", "drop", "corrupt",
               "reset", "disconnect")
#: Potential of a floating electrode (the lead-off current source drives it towards a rail): far outside
#: the +-400 mV input range at gain 6, so the channels that use it clip, as on a real ADS1298.
FLOATING_ELECTRODE_UV = 700_000.0


class SimulatorError(Exception):
    """Bad record or bad fault specification (message says what and how to fix it)."""


@dataclass
class Fault:
    """One injected fault. start_s / duration_s are stream-time seconds (duration None = to the end).

    kind: electrode_off (electrode), noise (amplitude_uv rms, EMG-like), wander (amplitude_uv, freq_hz),
    mains (freq_hz 50/60, amplitude_uv), flat, saturate, drop (frames), corrupt (frames), reset,
    disconnect (duration_s: the cable is out that long).
    """
    kind: str
    start_s: float = 0.0
    duration_s: float | None = None
    electrode: str | None = None
    amplitude_uv: float | None = None
    freq_hz: float | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise SimulatorError(f"unknown fault kind {self.kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if self.kind == "electrode_off" and self.electrode not in ELECTRODES:
            raise SimulatorError(f"electrode_off needs an electrode out of {', '.join(ELECTRODES)}, "
                                 f"got {self.electrode!r} (e.g. electrode_off:LA@2+3)")
        if not math.isfinite(self.start_s) or self.start_s < 0 or (
                self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s >= 0)):
            raise SimulatorError("fault start and duration must be seconds >= 0 (e.g. noise:80@2+3)")
        for name in ("amplitude_uv", "freq_hz"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SimulatorError(f"fault {self.kind}: {name} {value} must be a number above 0")
        if self.frames is not None and self.frames < 1:
            raise SimulatorError(f"fault {self.kind}: the number of frames must be at least 1, got {self.frames}")
        defaults = {"noise": (50.0, None), "wander": (500.0, 0.3), "mains": (100.0, 50.0)}
        if self.kind in defaults:
            amp, freq = defaults[self.kind]
            if self.amplitude_uv is None:
                self.amplitude_uv = amp
            if self.freq_hz is None:
                self.freq_hz = freq
        if self.kind in ("drop", "corrupt") and self.frames is None:
            self.frames = 1
        if self.kind == "disconnect" and self.duration_s is None:
            self.duration_s = 2.0

    def active(self, t: np.ndarray) -> np.ndarray:
        end = math.inf if self.duration_s is None else self.start_s + self.duration_s
        return (t >= self.start_s) & (t < end)


def parse_fault(spec: str) -> Fault:
    """'KIND[:ARG[:ARG]]@START[+DURATION]' -> Fault. Examples:

    electrode_off:LA@2+3   noise:80@1   wander:600@0   mains:60:150@0+5   flat@4+1   saturate@4+1
    drop:5@3 (5 frames)   corrupt:2@3 (2 frames)   reset@5   disconnect:2@5 (or disconnect@5+2)
    """
    head, sep, when = spec.partition("@")
    if not sep:
        raise SimulatorError(f"fault {spec!r}: missing '@START' (e.g. electrode_off:LA@2+3)")
    start_txt, plus, dur_txt = when.partition("+")
    try:
        start = float(start_txt)
        dur = float(dur_txt) if plus else None
    except ValueError:
        raise SimulatorError(f"fault {spec!r}: START and DURATION must be seconds, e.g. @2+3") from None
    kind, *args = head.split(":")
    most = {"electrode_off": 1, "noise": 1, "wander": 2, "mains": 2, "drop": 1, "corrupt": 1, "disconnect": 1}
    if kind in most and len(args) > most[kind]:
        raise SimulatorError(f"fault {spec!r}: {kind} takes at most {most[kind]} argument(s) "
                             f"(e.g. electrode_off:LA@2+3, noise:80@1, mains:60:150@0+5)")
    kw: dict = {}
    try:
        if kind == "electrode_off":
            if len(args) != 1:
                raise SimulatorError(f"fault {spec!r}: electrode_off needs one electrode, e.g. electrode_off:LA@2")
            kw["electrode"] = args[0].upper() if args[0].upper() in ELECTRODES else args[0]
        elif kind == "noise" or kind == "wander":
            if args:
                kw["amplitude_uv"] = float(args[0])
            if kind == "wander" and len(args) > 1:
                kw["freq_hz"] = float(args[1])
        elif kind == "mains":
            if args:
                kw["freq_hz"] = float(args[0])
            if len(args) > 1:
                kw["amplitude_uv"] = float(args[1])
        elif kind in ("drop", "corrupt"):
            if args:
                kw["frames"] = int(args[0])
        elif kind == "disconnect":
            if args:
                if dur is not None:
                    raise SimulatorError(f"fault {spec!r}: give the disconnect length once")
                dur = float(args[0])
        elif args:
            raise SimulatorError(f"fault {spec!r}: {kind} takes no arguments")
    except ValueError:
        raise SimulatorError(f"fault {spec!r}: arguments must be numbers") from None
    return Fault(kind=kind, start_s=start, duration_s=dur, **kw)


def apply_signal_faults(uv: np.ndarray, t: np.ndarray, faults: list[Fault], rng: np.random.Generator,
                        chan_phase: np.ndarray, chan_gain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the sample-level faults active at stream times t to uv ((n, 8) microvolts, changed in place).

    Returns (status bits per sample, flat mask, saturated mask): an electrode off sets its lead-off bit and
    drives the channels that use it towards the rail (Wilson's terminal moves for a limb electrode).
    """
    n = len(t)
    status = np.zeros(n, dtype=np.uint16)
    flat = np.zeros(n, dtype=bool)
    sat = np.zeros(n, dtype=bool)
    for f in faults:
        act = f.active(t)
        if not act.any():
            continue
        a = act[:, None]
        if f.kind == "electrode_off":
            bit = ELECTRODES.index(f.electrode)
            status[act] |= np.uint16(1 << bit)
            d = FLOATING_ELECTRODE_UV + 2000.0 * np.sin(2 * np.pi * 50.0 * t)
            delta = np.zeros((n, 8))
            if f.electrode in LIMB_ELECTRODES:
                delta[:, 2:] -= (d / 3.0)[:, None]        # Wilson's terminal moves
                if f.electrode == "RA":
                    delta[:, 0] -= d
                    delta[:, 1] -= d
                elif f.electrode == "LA":
                    delta[:, 0] += d
                else:
                    delta[:, 1] += d
            else:
                delta[:, CHANNELS.index(f.electrode)] += d
            uv += np.where(a, delta, 0.0)
        elif f.kind == "noise":
            w = rng.normal(size=(n + 1, 8))
            uv += np.where(a, np.diff(w, axis=0) / np.sqrt(2.0) * f.amplitude_uv, 0.0)
        elif f.kind == "wander":
            uv += np.where(a, f.amplitude_uv * np.sin(2 * np.pi * f.freq_hz * t[:, None]
                                                      + chan_phase), 0.0)
        elif f.kind == "mains":
            uv += np.where(a, f.amplitude_uv * chan_gain
                           * np.sin(2 * np.pi * f.freq_hz * t[:, None]), 0.0)
        elif f.kind == "flat":
            flat |= act
        elif f.kind == "saturate":
            sat |= act
    return status, flat, sat
