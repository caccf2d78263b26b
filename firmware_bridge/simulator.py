"""A replaying ECG front end on a pseudo-terminal: the default device for demos and tests.

Why a pty and real records: the host driver is exercised exactly as with hardware (pyserial on a tty
device, the real wire protocol, real ECG morphology), and faults a real front end produces (electrodes
off, noise, lost frames, resets, a pulled cable) can be injected on purpose and at known times.

The simulator behaves like an ADS1298-class device with the firmware of docs/wire_protocol.md: it
answers GET_INFO / SET_RATE / START / STOP, streams DATA frames (fs/50 samples each) only while started,
and sends an unsolicited DEVICE_INFO after a (simulated) reset.

Fault times are in *stream time*: seconds of signal the device has produced since the host first
started it (dropped and corrupted frames count, idle time does not). So a fault fires at the same
place in the data whatever the replay speed and however long the host took to connect.

This module is the device: its state, its answers to commands, its pacing and its frames. Beside it:
simulator_record.py (the record it replays), simulator_pty.py (its end of the cable),
simulator_faults.py (the faults), simulator_cli.py (ecg-frontend-sim).
"""
from __future__ import annotations

import os
import select
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from . import protocol as P
from .frame_decoder import FrameDecoder
from .samples import CHANNELS, ELECTRODES
from .simulator_faults import (FAULT_KINDS, FLOATING_ELECTRODE_UV, Fault, SimulatorError,  # noqa: F401 - public
                               apply_signal_faults, parse_fault)
from .simulator_pty import close_pty, open_pty
from .simulator_record import load_record, resample_to  # noqa: F401 - public here too


@dataclass
class SimulatorStats:
    frames_sent: int = 0
    frames_dropped: int = 0          # by a drop fault
    frames_missing: int = 0          # not sent: the record has no sample there (NaN), see load_record
    frames_corrupted: int = 0        # by a corrupt fault
    frames_unread: int = 0           # output buffer full: nobody reading (a UART would lose them too)
    commands: int = 0
    resets: int = 0
    disconnects: int = 0
    events: list[str] = field(default_factory=list)


class FrontEndSimulator:
    """Replays a WFDB record as an ADS1298-class front end on a pty. start() -> slave device path.

    speed: 1.0 real time, N times faster, 0 = as fast as the reader takes the bytes.
    link_path: keep a symlink there pointing at the current pty (a new pty after a disconnect), so a
    host can reopen the same path, as with a udev by-id name.
    """

    def __init__(self, record_path: str | os.PathLike, fs: int = 500, speed: float = 1.0, loop: bool = True,
                 faults: Iterable[Fault | str] = (), link_path: str | os.PathLike | None = None,
                 seed: int = 0, device_id: str = "SIM-ADS1298", gain: int = 6,
                 vref_uv: int = 2_400_000, firmware_version: tuple[int, int, int] = (1, 0, 0),
                 on_event: Callable[[str, float], None] | None = None) -> None:
        self.record_path = str(record_path)
        self.record_fs, self._record_uv = load_record(record_path)
        self.boot_rate = int(fs)
        self.speed = float(speed)
        if not np.isfinite(self.speed) or self.speed < 0:
            raise SimulatorError(f"speed {speed}: give a number >= 0 (1 = real time, 0 = as fast as the reader "
                                 f"takes the bytes)")
        self.loop = loop
        self.faults = [parse_fault(f) if isinstance(f, str) else f for f in faults]
        self.link_path = str(link_path) if link_path else None
        self.device_id = device_id
        self.gain = int(gain)
        self.vref_uv = int(vref_uv)
        self.firmware_version = firmware_version
        self.on_event = on_event
        #: one count in picovolts; the simulator quantises with exactly what it reports
        self.lsb_pv = int(round(self.vref_uv * 1e6 / self.gain / 2 ** 23))
        rates = set(P.STANDARD_RATES)
        if P.FRAMES_PER_SECOND <= self.record_fs <= 1000:     # replay a record at its own rate too
            rates.add(self.record_fs)
        self.supported_rates = tuple(sorted(rates))[: P.MAX_RATES]
        if self.boot_rate not in self.supported_rates:
            raise SimulatorError(f"fs={fs}: choose one of {', '.join(map(str, self.supported_rates))} "
                                 f"(the standard rates or the record's own rate)")
        self.stats = SimulatorStats()
        self._rng = np.random.default_rng(seed)
        self._chan_phase = self._rng.uniform(0, 2 * np.pi, size=8)
        self._chan_gain = self._rng.uniform(0.5, 1.0, size=8)
        self._signals: dict[int, np.ndarray] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.device_path: str | None = None
        self.error: Exception | None = None
        self._fired: set[int] = set()
        self._stream_base_s = 0.0         # stream time (s) when the current rate took effect
        self._stream_n = 0                # samples emitted since then (exact integer time base)
        self._drop_left = 0
        self._corrupt_left = 0
        self.finished = False
        self._boot()

    # -- device state ---------------------------------------------------------------------------

    def _boot(self) -> None:
        if hasattr(self, "rate"):           # stream time goes on across reboots (the patient does)
            self._stream_base_s = self.stream_time_s
            self._stream_n = 0
        self.rate = self.boot_rate
        self.streaming = False
        self._seq = 0
        self._boot_wall = time.monotonic()
        self._clock_base_us = 0          # device clock at the start of the current rate segment
        self._clock_samples = 0          # samples produced in that segment
        self._out = bytearray()
        self._decoder = FrameDecoder()

    def _signal(self, rate: int) -> np.ndarray:
        if rate not in self._signals:
            self._signals[rate] = resample_to(self._record_uv, self.record_fs, rate)
        return self._signals[rate]

    def device_info(self, token: int = 0) -> P.DeviceInfo:
        return P.DeviceInfo(device_id=self.device_id, firmware_version=self.firmware_version,
                            rate_hz=self.rate, supported_rates=self.supported_rates, gain=self.gain,
                            vref_uv=self.vref_uv, lsb_pv=self.lsb_pv, channel_map=CHANNELS,
                            lead_off_electrodes=ELECTRODES,
                            samples_per_frame=P.samples_per_frame(self.rate),
                            streaming=self.streaming, token=token)

    # -- pty ----------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        self._master, self._slave, self.device_path = open_pty(self.link_path)

    def _close_pty(self) -> None:
        close_pty((self._master, self._slave), self.link_path)
        self._master = self._slave = None

    # -- public API -----------------------------------------------------------------------------

    def start(self) -> str:
        """Open the pty, start the device thread, return the path the host should open."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name="frontend-sim", daemon=True)
        self._thread.start()
        return self.link_path or self.device_path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()

    def __enter__(self) -> "FrontEndSimulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def stream_time_s(self) -> float:
        """Seconds of signal produced since the host first started the device."""
        return self._stream_base_s + self._stream_n / self.rate

    def _event(self, text: str) -> None:
        """Something a tester wants to see (fault fired, cable back): kept in stats, logged to stderr
        or handed to on_event(text, stream_time_s)."""
        self.stats.events.append(text)
        if self.on_event is not None:
            self.on_event(text, self.stream_time_s)
        else:
            print(f"ecg-frontend-sim: {text}", file=sys.stderr, flush=True)

    # -- main loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - a simulator bug must be loud, not a silent quiet device
            import traceback
            self.error = e
            traceback.print_exc()
            self._event(f"simulator stopped by an internal error: {e!r}")
            self.finished = True

    def _loop(self) -> None:
        next_due = time.monotonic()
        reopen_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self._master is None:
                if reopen_at is not None and now >= reopen_at:
                    with self._lock:
                        self._boot()           # a device on a re-plugged cable comes back idle
                        self._open_pty()
                    self._event(f"cable back: {self.device_path}")
                    reopen_at = None
                else:
                    self._stop.wait(0.01)
                continue
            # schedule frames
            if self.streaming and not self.finished:
                if self.speed == 0:
                    while len(self._out) < 8192 and self.streaming and self._master is not None:
                        if not self._produce_frame():
                            break
                else:
                    period = P.samples_per_frame(self.rate) / self.rate / self.speed
                    if now - next_due > 1.0:           # fell far behind: do not burst, resync
                        next_due = now
                    while now >= next_due and self.streaming and self._master is not None:
                        if not self._produce_frame():
                            break
                        next_due += period
            else:
                next_due = now
            if self._master is None:                   # a disconnect fault fired
                reopen_at = time.monotonic() + self._disconnect_wall
                continue
            wait = 0.05
            if self.streaming and self.speed > 0:
                wait = max(0.0, min(wait, next_due - time.monotonic()))
            wlist = [self._master] if self._out else []
            try:
                r, w, _ = select.select([self._master], wlist, [], wait)
            except (OSError, ValueError):
                continue
            if w and self._out:
                try:
                    k = os.write(self._master, self._out)
                    del self._out[:k]
                except BlockingIOError:
                    pass
                except OSError:
                    self._out.clear()
            if r:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:
                    data = b""
                for msg in self._decoder.feed(data):
                    self._command(msg)

    def _send(self, msg: P.Message, lead_zero: bool = False) -> None:
        self._queue((b"\x00" if lead_zero else b"") + P.encode(msg))

    def _queue(self, wire: bytes) -> None:
        if len(self._out) > 65536:
            self.stats.frames_unread += 1
            return
        self._out += wire

    def _command(self, msg: P.Message) -> None:
        self.stats.commands += 1
        if isinstance(msg, P.GetInfo):
            self._send(self.device_info(msg.token), lead_zero=True)
        elif isinstance(msg, P.Start):
            if self.finished:
                self._send(P.ErrorReply(msg.token, P.T_START, P.E_INTERNAL, "end of record"))
                return
            if not self.streaming:
                self.streaming = True
                self._seq = 0
                self._first_frame = True
            self._send(P.Ack(msg.token, P.T_START))
        elif isinstance(msg, P.Stop):
            self.streaming = False
            self._send(P.Ack(msg.token, P.T_STOP))
        elif isinstance(msg, P.SetRate):
            if self.streaming:
                self._send(P.ErrorReply(msg.token, P.T_SET_RATE, P.E_BUSY, "stop first"))
            elif msg.rate_hz not in self.supported_rates or msg.rate_hz < P.FRAMES_PER_SECOND:
                self._send(P.ErrorReply(msg.token, P.T_SET_RATE, P.E_BAD_ARGUMENT,
                                        f"rates: {','.join(map(str, self.supported_rates))}"))
            else:
                self._clock_base_us = self._clock_us()
                self._clock_samples = 0
                self._stream_base_s = self.stream_time_s
                self._stream_n = 0
                self.rate = msg.rate_hz
                self._send(P.Ack(msg.token, P.T_SET_RATE))
        else:
            t = P.message_type(msg)
            self._send(P.ErrorReply(getattr(msg, "token", 0), t, P.E_UNKNOWN_COMMAND, "not a command"))

    def _clock_us(self) -> int:
        return self._clock_base_us + (self._clock_samples * 1_000_000) // self.rate

    # -- frames -----------------------------------------------------------------------------------

    def _produce_frame(self) -> bool:
        """Make the next DATA frame (applying faults) and queue it. False when the stream ended."""
        fs = self.rate
        n = P.samples_per_frame(fs)
        t0 = self.stream_time_s
        # one-shot faults that fire at this point of the stream
        for i, f in enumerate(self.faults):
            if i in self._fired or f.kind not in ("drop", "corrupt", "reset", "disconnect") or t0 < f.start_s - 1e-9:
                continue
            self._fired.add(i)
            if f.kind == "drop":
                self._drop_left += f.frames
                self._event(f"dropping {f.frames} frame(s) at t={t0:.2f}s, seq {self._seq}")
            elif f.kind == "corrupt":
                self._corrupt_left += f.frames
                self._event(f"corrupting {f.frames} frame(s) at t={t0:.2f}s, seq {self._seq}")
            elif f.kind == "reset":
                self.stats.resets += 1
                self._event(f"device reset at t={t0:.2f}s")
                out = self._out
                self._boot()
                self._out = out                   # bytes already on the wire still arrive
                self._send(self.device_info(0), lead_zero=True)
                return False
            elif f.kind == "disconnect":
                self.stats.disconnects += 1
                self._disconnect_wall = f.duration_s / self.speed if self.speed > 0 else f.duration_s
                self._event(f"cable pulled at t={t0:.2f}s for {f.duration_s:.2f}s")
                with self._lock:
                    self._close_pty()
                return False
        sig = self._signal(fs)
        idx0 = int(round(t0 * fs))
        if not self.loop and idx0 + n > sig.shape[0]:
            self.finished = True
            self.streaming = False
            self._event("end of record")
            return False
        rows = np.arange(idx0, idx0 + n) % sig.shape[0]
        uv = sig[rows].copy()
        missing = bool(np.isnan(uv).any())       # a gap in the record is a gap on the wire
        if missing:
            uv = np.nan_to_num(uv, nan=0.0)
        t = t0 + np.arange(n) / fs
        status, flat, sat = apply_signal_faults(uv, t, self.faults, self._rng, self._chan_phase, self._chan_gain)
        counts = np.clip(np.rint(uv / (self.lsb_pv / 1e6)), P.COUNT_MIN, P.COUNT_MAX).astype(np.int32)
        counts[flat] = 0
        counts[sat] = P.COUNT_MAX
        frame = P.DataFrame(self._seq & 0xFFFFFFFF, self._clock_us(), status, counts)
        self._seq += 1
        self._clock_samples += n
        self._stream_n += n
        if missing:
            self.stats.frames_missing += 1
            return True
        if self._drop_left > 0:
            self._drop_left -= 1
            self.stats.frames_dropped += 1
            return True
        wire = P.encode(frame)
        if getattr(self, "_first_frame", False):
            wire = b"\x00" + wire
            self._first_frame = False
        if self._corrupt_left > 0:
            self._corrupt_left -= 1
            self.stats.frames_corrupted += 1
            b = bytearray(wire)
            for _ in range(int(self._rng.integers(1, 4))):
                pos = int(self._rng.integers(0, len(b) - 1))
                b[pos] ^= int(self._rng.integers(1, 256))
            wire = bytes(b)
        self._queue(wire)
        self.stats.frames_sent += 1
        return True


if __name__ == "__main__":            # the command line lives in simulator_cli.py (no import cycle)
    print("ecg-frontend-sim: run 'ecg-frontend-sim ...' or 'python -m firmware_bridge.simulator_cli ...'",
          file=sys.stderr)
    sys.exit(2)
