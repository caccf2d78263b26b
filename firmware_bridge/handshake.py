"""Opening a session with a front end: STOP, GET_INFO, SET_RATE (+ GET_INFO), START (docs/wire_protocol.md).

Why a module of its own: this is the one place the host *asks* the device something and waits for the
answer, so it is where a wrong device, a wrong baud rate or a refusing firmware is found out, and each
of those must end in a HandshakeError that says what to fix, within a bounded time (2 x timeout_s for
the whole exchange), so the driver's blocks() is never silent much longer than that.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable

import serial

from . import protocol as P
from .frame_decoder import FrameDecoder
from .samples import CHANNELS


class HandshakeError(Exception):
    """The device did not answer the handshake as the protocol requires (message says what)."""


def send_command(ser: serial.Serial, msg: P.Message) -> None:
    """Write one command; the leading 0x00 flushes any line noise at the device."""
    ser.write(b"\x00" + P.encode(msg))


def check_info(info: P.DeviceInfo) -> None:
    """Refuse a DEVICE_INFO the host cannot turn into the 12 leads it promises."""
    if info.protocol_version != P.PROTOCOL_VERSION:
        raise HandshakeError(f"device speaks protocol {info.protocol_version}, host {P.PROTOCOL_VERSION}")
    if sorted(info.channel_map) != sorted(CHANNELS) or len(info.channel_map) != len(CHANNELS):
        raise HandshakeError(f"device channel map {info.channel_map} does not hold exactly {CHANNELS}")
    if info.lsb_pv <= 0:
        raise HandshakeError("device reports LSB 0")


class Handshake:
    """One handshake on an open port. run() -> the device's DEVICE_INFO, streaming at the asked rate.

    backlog: what arrived after the last answer (the first DATA frames, often), for the stream reader;
    it is kept even when run() fails part-way, as the driver drops it with the port then.
    """

    def __init__(self, ser: serial.Serial, decoder: FrameDecoder, next_token: Callable[[], int],
                 closed: threading.Event, *, timeout_s: float, baudrate: int) -> None:
        self.ser = ser
        self.decoder = decoder
        self.next_token = next_token
        self.closed = closed
        self.timeout_s = timeout_s
        self.baudrate = baudrate
        self.backlog: list[P.Message] = []
        self._deadline = 0.0

    def run(self, rate_hz: int | None) -> P.DeviceInfo:
        """STOP, GET_INFO, SET_RATE (+ GET_INFO), START; rate_hz None keeps the device's rate."""
        ser = self.ser
        self._deadline = time.monotonic() + 2 * self.timeout_s
        send_command(ser, P.Stop(self.next_token()))
        end = time.monotonic() + 0.05
        while time.monotonic() < end:                 # let a streaming device go quiet
            ser.read(max(1, ser.in_waiting))
        ser.reset_input_buffer()
        self.decoder.reset()
        info = self._request(P.GetInfo(self.next_token()), P.DeviceInfo)
        check_info(info)
        if rate_hz is not None and info.rate_hz != rate_hz:
            if rate_hz not in info.supported_rates:
                raise HandshakeError(f"device {info.device_id} does not offer {rate_hz} Hz "
                                     f"(it offers {', '.join(map(str, info.supported_rates))}); "
                                     f"set the configured rate to one of those")
            self._request(P.SetRate(self.next_token(), rate_hz), P.Ack)
            info = self._request(P.GetInfo(self.next_token()), P.DeviceInfo)
            check_info(info)
            if info.rate_hz != rate_hz:
                raise HandshakeError(f"device acknowledged SET_RATE {rate_hz} but reports {info.rate_hz}")
        self._request(P.Start(self.next_token()), P.Ack)
        return replace(info, streaming=True)

    def _request(self, cmd: P.Message, want: type) -> P.Message:
        """Send cmd, wait for the answer with its token; keep what arrives after it in the backlog."""
        ser = self.ser
        token = cmd.token
        for attempt in range(2):
            if time.monotonic() >= self._deadline:
                break
            send_command(ser, cmd)
            deadline = min(self._deadline, time.monotonic() + self.timeout_s)
            while time.monotonic() < deadline:
                if self.closed.is_set():
                    raise HandshakeError("closed")
                data = ser.read(max(1, ser.in_waiting))
                if not data:
                    continue
                msgs = self.decoder.feed(data)
                for i, m in enumerate(msgs):
                    if isinstance(m, P.ErrorReply) and m.token == token:
                        raise HandshakeError(f"device refused {type(cmd).__name__}: code {m.code} {m.message!r}")
                    if isinstance(m, want) and getattr(m, "token", None) == token:
                        self.backlog = msgs[i + 1:]
                        return m
        raise HandshakeError(f"no answer to {type(cmd).__name__} (handshake limit "
                             f"{2 * self.timeout_s:.1f} s; is this the ECG front end, at {self.baudrate} baud?)")
