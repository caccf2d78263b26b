"""Host driver: serial port -> handshake -> blocks of 12-lead samples in microvolts.

Why it is built this way: the daemon above must never stop because of the link. So blocks() never
raises on what arrives (damaged frames are counted and dropped by the FrameDecoder), it yields None
regularly when nothing comes (the caller runs its watchdog), it reopens a vanished port with backoff,
and every discontinuity is made visible in the SampleBlock it yields next: a gap of known size (lost
frames, sized from the 32-bit sequence counter) or -1 with an event (device reset, reconnect).

This module holds the port's life (open, backoff, stall, reopen) and the stream loop; the session
opening is handshake.py, where each frame goes in the stream is sequencer.py.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import serial

from . import protocol as P
from .frame_decoder import FrameDecoder
from .handshake import Handshake, HandshakeError  # noqa: F401 - HandshakeError: public here too
from .sequencer import FrameSequencer
from .samples import CHANNELS, ELECTRODES, SampleBlock, derive_leads

log = logging.getLogger(__name__)

STATUSES = ("connecting", "streaming", "no_device", "stalled")
_BIT_SHIFTS = np.arange(len(ELECTRODES), dtype=np.uint16)


@dataclass
class DriverStats:
    """Counters since the driver was created.

    frames_ok: intact frames of any type; crc_errors: frames failing CRC-32; bad_frames: rejected for
    other reasons (COBS structure, length, version, type, over-long); bytes_discarded: garbage and
    rejected frames; frames_lost / samples_lost: DATA missing by the sequence counter; blocks /
    samples: what blocks() yielded; duplicates: repeated frames dropped; frames_refused: frames dropped
    for an implausible sequence or a wrong sample count (sequencer.py says why); resyncs: confirmed
    restarts of the sequence counter without a DEVICE_INFO.
    """
    frames_ok: int = 0
    crc_errors: int = 0
    bad_frames: int = 0
    bytes_discarded: int = 0
    frames_lost: int = 0
    samples_lost: int = 0
    reconnects: int = 0
    device_resets: int = 0
    blocks: int = 0
    samples: int = 0
    duplicates: int = 0
    frames_refused: int = 0
    resyncs: int = 0


class FrontEndDriver:
    """Talks to one front end on port_path (a serial device, a pty, or a symlink to either).

    rate_hz: the rate to ask for (None keeps the device's). max_gap_s: the longest gap the sequence
    counter may claim inside one stream (longer jumps need confirmation, see sequencer.py). The driver is
    used from one thread (iterate blocks()); close() may be called from any thread and ends the iteration.
    """

    def __init__(self, port_path: str, baudrate: int = 460800, rate_hz: int | None = 500, *,
                 handshake_timeout_s: float = 0.5, stall_timeout_s: float = 1.0,
                 restart_after_s: float = 3.0, backoff_initial_s: float = 0.1,
                 backoff_max_s: float = 5.0, read_timeout_s: float = 0.05, max_gap_s: float = 10.0) -> None:
        self.port_path = str(port_path)
        self.baudrate = int(baudrate)
        self.rate_hz = rate_hz
        self.handshake_timeout_s = handshake_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.restart_after_s = restart_after_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.read_timeout_s = read_timeout_s
        self.max_gap_s = max_gap_s
        self.last_error: str | None = None
        self._info: P.DeviceInfo | None = None
        self._status = "connecting"
        self._ser: serial.Serial | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._decoder = FrameDecoder()
        self._counters = DriverStats()
        self._token = 0
        self._backlog: list[P.Message] = []
        self._ever_connected = False
        self._iterating = False
        self._sequencer = FrameSequencer(self._counters, 1)
        self._pending_events = self._sequencer.pending_events
        self._next_index = 0
        self._last_data = time.monotonic()
        self._backoff = backoff_initial_s
        self._next_attempt = 0.0
        self._perm: np.ndarray | None = None
        self._lsb_uv = 0.0
        self._lo_supported = np.ones(len(ELECTRODES), dtype=bool)

    # -- public state ---------------------------------------------------------------------------

    @property
    def info(self) -> P.DeviceInfo | None:
        return self._info

    @property
    def status(self) -> str:
        return self._status

    @property
    def stats(self) -> DriverStats:
        d = self._decoder.stats
        return replace(self._counters, frames_ok=d.frames_ok, crc_errors=d.crc_errors,
                       bad_frames=d.frames_rejected - d.crc_errors, bytes_discarded=d.bytes_discarded)

    @property
    def last_refusal(self) -> str | None:
        """Why the last DATA frame was refused (wrong sample count, implausible sequence), or None."""
        return self._sequencer.last_refusal

    @property
    def fs(self) -> int | None:
        return self._info.rate_hz if self._info else None

    def close(self) -> None:
        """Stop: ends blocks() and releases the port. Safe from another thread or a signal handler.

        While blocks() is being iterated, the read in progress is cancelled and the iterating thread
        releases the port itself (closing a fd under a reader is a race); otherwise it is closed here.
        """
        self._closed.set()
        with self._lock:
            ser = self._ser
            iterating = self._iterating
        if ser is not None:
            try:
                ser.cancel_read()
            except Exception:
                pass
            if not iterating:
                self._drop_port()

    def __enter__(self) -> "FrontEndDriver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------------

    def _next_token(self) -> int:
        self._token = self._token % 255 + 1
        return self._token

    def _open(self) -> bool:
        """One attempt to open the port and handshake. On failure: status no_device, backoff grows."""
        self._status = "connecting"
        ser = None
        try:
            ser = serial.Serial(self.port_path, self.baudrate, timeout=self.read_timeout_s,
                                write_timeout=1.0, exclusive=True)
            with self._lock:
                if self._closed.is_set():
                    ser.close()
                    return False
                self._ser = ser
            self._handshake(ser)
        except Exception as e:  # noqa: BLE001 - whatever the port or device does, the driver goes on
            msg = f"{self.port_path}: {e}"
            if msg != self.last_error:
                log.warning("front end not available: %s", msg)
            self.last_error = msg
            self._drop_port()
            self._status = "no_device"
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self.backoff_max_s, self._backoff * 2)
            return False
        self.last_error = None
        self._backoff = self.backoff_initial_s
        if self._ever_connected:
            self._counters.reconnects += 1
            self._pending_events.append("reconnected")
            log.info("front end reconnected on %s", self.port_path)
        self._ever_connected = True
        self._status = "streaming"
        self._last_data = time.monotonic()
        return True

    def _drop_port(self) -> None:
        with self._lock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass
        self._decoder.reset()
        self._backlog.clear()
        self._sequencer.restart()

    def _handshake(self, ser: serial.Serial) -> None:
        """Run the handshake (handshake.py); whatever arrived after its last answer is read first."""
        self._status = "connecting"
        hs = Handshake(ser, self._decoder, self._next_token, self._closed,
                       timeout_s=self.handshake_timeout_s, baudrate=self.baudrate)
        try:
            info = hs.run(self.rate_hz)
        finally:
            self._backlog = hs.backlog
        self._set_info(info)
        self._sequencer.restart()

    def _set_info(self, info: P.DeviceInfo) -> None:
        self._info = info
        self._perm = np.array([info.channel_map.index(c) for c in CHANNELS])
        self._lsb_uv = info.lsb_pv / 1e6
        self._lo_supported = np.array([e in info.lead_off_electrodes for e in ELECTRODES])
        self._sequencer.max_gap_frames = max(1, int(self.max_gap_s * info.rate_hz / max(1, info.samples_per_frame)))

    # -- streaming --------------------------------------------------------------------------------

    def blocks(self, idle_timeout_s: float = 1.0) -> Iterator[SampleBlock | None]:
        """Yield SampleBlocks as they arrive, or None after idle_timeout_s without one.

        Never raises because of the device or the bytes; ends when close() is called.
        """
        with self._lock:
            if self._iterating:
                raise RuntimeError("blocks() is already being iterated")
            self._iterating = True
        try:
            yield from self._blocks(idle_timeout_s)
        finally:
            with self._lock:
                self._iterating = False
            self._drop_port()

    def _blocks(self, idle_timeout_s: float) -> Iterator[SampleBlock | None]:
        last_yield = time.monotonic()
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                ser = self._ser
            if ser is None:
                if now >= self._next_attempt and self._open():
                    continue
                if self._closed.is_set():
                    break
                if now - last_yield >= idle_timeout_s:
                    yield None
                    last_yield = time.monotonic()
                    continue
                wait = min(self._next_attempt, last_yield + idle_timeout_s) - time.monotonic()
                self._closed.wait(max(0.0, min(wait, 0.1)))
                continue
            msgs, self._backlog = self._backlog, []
            try:
                data = ser.read(max(1, ser.in_waiting))
                if data and ser.in_waiting:
                    data += ser.read(ser.in_waiting)
            except Exception as e:                       # port vanished (EIO), or closed under us
                if self._closed.is_set():
                    break
                self._lost_port(f"read failed: {e}")
                continue
            if data:
                msgs += self._decoder.feed(data)
            out = self._handle(msgs, ser) if msgs else []
            now = time.monotonic()
            for block in out:
                yield block
                last_yield = now
            if self._status in ("streaming", "stalled") and self._ser is not None:
                quiet = now - self._last_data
                if quiet > self.restart_after_s:
                    self._lost_port(f"no data for {quiet:.1f} s")
                    self._next_attempt = 0.0
                    continue
                self._status = "stalled" if quiet > self.stall_timeout_s else "streaming"
            if not out and now - last_yield >= idle_timeout_s:
                yield None
                last_yield = time.monotonic()

    def _lost_port(self, why: str) -> None:
        log.warning("front end lost on %s: %s", self.port_path, why)
        self.last_error = why
        self._drop_port()
        self._status = "no_device"
        self._next_attempt = time.monotonic() + self._backoff

    def _handle(self, msgs: list[P.Message], ser: serial.Serial) -> list[SampleBlock]:
        """Messages -> blocks. Contiguous frames are merged; a discontinuity starts a new block."""
        blocks: list[SampleBlock] = []
        run: list[P.DataFrame] = []
        run_gap = 0
        run_events: tuple[str, ...] = ()

        def flush() -> None:
            nonlocal run
            if run:
                blocks.append(self._make_block(run, run_gap, run_events))
                run = []

        for m in msgs:
            if isinstance(m, P.DataFrame):
                if self._info is None:
                    continue
                placed = self._sequencer.place(m, self._info.samples_per_frame)
                if m.n == self._info.samples_per_frame:
                    self._last_data = time.monotonic()
                for p in placed:
                    if p.gap != 0 or p.events or not run:
                        flush()
                        run_gap, run_events = p.gap, p.events
                    run.append(p.frame)
            elif isinstance(m, P.DeviceInfo):
                if m.token == 0:                      # unsolicited: the device rebooted
                    flush()
                    self._counters.device_resets += 1
                    self._pending_events.append("device_reset")
                    log.warning("front end %s reset; handshaking again", m.device_id)
                    try:
                        self._handshake(ser)
                    except Exception as e:
                        self._lost_port(f"handshake after reset failed: {e}")
                        break
                    self._status = "streaming"
                    self._last_data = time.monotonic()
                    rest, self._backlog = self._backlog, []
                    blocks += self._handle(rest, ser)
                    return blocks
            elif isinstance(m, P.ErrorReply):
                log.warning("front end error for command 0x%02x: code %d %s", m.command, m.code, m.message)
        flush()
        return blocks

    def _make_block(self, frames: list[P.DataFrame], gap: int, events: tuple[str, ...]) -> SampleBlock:
        if len(frames) == 1:
            counts, status = frames[0].counts, frames[0].status
        else:
            counts = np.concatenate([f.counts for f in frames])
            status = np.concatenate([f.status for f in frames])
        ch_uv = counts[:, self._perm].astype(np.float64) * self._lsb_uv
        lead_off = ((status[:, None] >> _BIT_SHIFTS) & 1).astype(bool) & self._lo_supported
        first = self._next_index + (gap if gap > 0 else 0)
        n = counts.shape[0]
        self._next_index = first + n
        self._counters.blocks += 1
        self._counters.samples += n
        return SampleBlock(first_index=first, fs=self._info.rate_hz, leads_uv=derive_leads(ch_uv),
                           lead_off=lead_off, gap_before=gap, device_time_us=frames[0].timestamp_us,
                           events=events)
