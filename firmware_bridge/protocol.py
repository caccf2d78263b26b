"""The wire format between the ECG front end and the host, in one place (spec: docs/wire_protocol.md).

Why this shape:
- COBS framing with a 0x00 delimiter: a receiver that starts mid-stream, or sees garbage, resynchronises
  at the next 0x00 and never has to guess where a frame starts.
- CRC-32 (the zlib/IEEE one, ISO-HDLC) over the whole payload, plus exact length checks per message
  type: a corrupted frame is rejected, never turned into samples. CRC-32 is in hardware on most MCUs
  (STM32, nRF, RP2040 via table) and in C on the host (zlib.crc32), so it costs nothing.
- A 32-bit frame sequence counter and a 64-bit device timestamp: gaps are detected and sized, resets
  (sequence going backwards) are told apart from losses.
- Several samples per frame (fs/50, i.e. 50 frames/s at every rate) so the link overhead stays small:
  1000 Hz x 8 channels x 24 bit fits a 460,800-baud UART at ~59 % load.

All multi-byte integers are little-endian. The payload (what COBS wraps) is:
    version u8 | type u8 | body ... | crc32 u32 (over version, type and body)

This module is the format: codes, sizes, messages and their byte layout. The mechanisms around it live
beside it and are re-exported here where they are part of the format's API: cobs.py (byte stuffing),
protocol_errors.py (why a frame is refused); frame_decoder.py (FrameDecoder: a byte stream in, intact
messages out) imports this module, so it is imported from there.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Union

import numpy as np

from .cobs import cobs_decode, cobs_encode  # noqa: F401 - public here: the framing of this format
from .protocol_errors import (CrcError, FramingError, MalformedError, ProtocolError,  # noqa: F401 - public
                              UnknownTypeError, VersionError)
from .samples import CHANNELS, ELECTRODES

PROTOCOL_VERSION = 1

# Message type codes. Device -> host are < 0x10, host -> device are >= 0x10.
T_DATA = 0x01
T_DEVICE_INFO = 0x02
T_ACK = 0x03
T_ERROR = 0x04
T_GET_INFO = 0x10
T_START = 0x11
T_STOP = 0x12
T_SET_RATE = 0x13

# ERROR codes.
E_BAD_VERSION = 1
E_UNKNOWN_COMMAND = 2
E_BAD_ARGUMENT = 3
E_BUSY = 4
E_INTERNAL = 5

#: Rates an ADS1298-class device must offer (a device may list more in DEVICE_INFO).
STANDARD_RATES: tuple[int, ...] = (250, 500, 1000)
FRAMES_PER_SECOND = 50
N_CHANNELS = 8
SAMPLE_RECORD_BYTES = 2 + 3 * N_CHANNELS       # status u16 + 8 x int24
MAX_SAMPLES_PER_FRAME = 40
COUNT_MAX = (1 << 23) - 1
COUNT_MIN = -(1 << 23)

_HDR = 2
_CRC = 4
_DATA_FIXED = 4 + 8 + 1                         # seq u32, timestamp u64, n u8
MAX_PAYLOAD = _HDR + _DATA_FIXED + MAX_SAMPLES_PER_FRAME * SAMPLE_RECORD_BYTES + _CRC
#: Longest COBS-encoded frame (without the delimiter) a receiver has to buffer.
MAX_ENCODED = MAX_PAYLOAD + MAX_PAYLOAD // 254 + 1
DEVICE_ID_BYTES = 16
MAX_RATES = 8
MAX_ERROR_TEXT = 64


def samples_per_frame(rate_hz: int) -> int:
    """Samples per DATA frame at a rate: fs/50 (5 at 250 Hz, 10 at 500 Hz, 20 at 1000 Hz), at least 1."""
    return max(1, min(MAX_SAMPLES_PER_FRAME, int(rate_hz) // FRAMES_PER_SECOND))


def lead_off_mask(electrodes) -> int:
    """Electrode names (ELECTRODES) -> status/lead-off bit mask (bit i = ELECTRODES[i])."""
    mask = 0
    for e in electrodes:
        if e not in ELECTRODES:
            raise ValueError(f"unknown electrode {e!r}; expected one of {', '.join(ELECTRODES)}")
        mask |= 1 << ELECTRODES.index(e)
    return mask


def mask_electrodes(mask: int) -> tuple[str, ...]:
    """Bit mask -> electrode names, ELECTRODES order."""
    return tuple(e for i, e in enumerate(ELECTRODES) if mask >> i & 1)


# ---------------------------------------------------------------------------------------------
# messages


@dataclass(eq=False)
class DataFrame:
    """N consecutive samples of the 8 channels, as raw ADC counts.

    seq counts DATA frames since START (wraps at 2**32); timestamp_us is the device clock at the
    first sample; status[k] holds the lead-off bits of sample k (bit i = ELECTRODES[i], 1 = off);
    counts[k, c] is the 24-bit two's-complement reading of wire channel c.
    """
    seq: int
    timestamp_us: int
    status: np.ndarray            # (N,) uint16
    counts: np.ndarray            # (N, 8) int32

    @property
    def n(self) -> int:
        return int(self.counts.shape[0])

    def equals(self, other: object) -> bool:
        return (isinstance(other, DataFrame) and self.seq == other.seq
                and self.timestamp_us == other.timestamp_us
                and np.array_equal(self.status, other.status)
                and np.array_equal(self.counts, other.counts))


@dataclass(frozen=True)
class DeviceInfo:
    """What the device says about itself (answer to GET_INFO; also sent unsolicited, token 0, at boot).

    lsb_pv is the weight of one count in picovolts (ADS1298 at Vref 2.4 V, gain 6:
    2.4 V / 6 / 2**23 = 47.684 nV = 47684 pV). The host converts with lsb_pv, not with vref/gain, so a
    device with a trimmed reference reports its own calibrated LSB.
    """
    device_id: str
    firmware_version: tuple[int, int, int]
    rate_hz: int
    supported_rates: tuple[int, ...]
    gain: int
    vref_uv: int
    lsb_pv: int
    channel_map: tuple[str, ...] = CHANNELS
    lead_off_electrodes: tuple[str, ...] = ELECTRODES
    samples_per_frame: int = 10
    streaming: bool = False
    protocol_version: int = PROTOCOL_VERSION
    token: int = 0

    @property
    def lsb_uv(self) -> float:
        return self.lsb_pv / 1e6


@dataclass(frozen=True)
class Ack:
    """Command accepted. command is the type code of the command, token echoes its token."""
    token: int
    command: int


@dataclass(frozen=True)
class ErrorReply:
    """Command refused, with a code (E_*) and a short human-readable text."""
    token: int
    command: int
    code: int
    message: str = ""


@dataclass(frozen=True)
class GetInfo:
    token: int = 0


@dataclass(frozen=True)
class Start:
    """Start streaming. If stopped, the sequence counter restarts at 0; if already streaming: no-op."""
    token: int = 0


@dataclass(frozen=True)
class Stop:
    token: int = 0


@dataclass(frozen=True)
class SetRate:
    """Change the sample rate. Only while stopped (else ERROR E_BUSY)."""
    token: int = 0
    rate_hz: int = 500


Message = Union[DataFrame, DeviceInfo, Ack, ErrorReply, GetInfo, Start, Stop, SetRate]

_COMMAND_TYPES = {GetInfo: T_GET_INFO, Start: T_START, Stop: T_STOP}
_TYPE_COMMANDS = {v: k for k, v in _COMMAND_TYPES.items()}
_MESSAGE_TYPES = {DataFrame: T_DATA, DeviceInfo: T_DEVICE_INFO, Ack: T_ACK, ErrorReply: T_ERROR,
                  SetRate: T_SET_RATE, **_COMMAND_TYPES}


def message_type(msg: Message) -> int:
    """The type code (T_*) a message travels under, e.g. for the `command` field of ACK / ERROR."""
    try:
        return _MESSAGE_TYPES[type(msg)]
    except KeyError:
        raise TypeError(f"not a protocol message: {msg!r}") from None


# ---------------------------------------------------------------------------------------------
# encode


def _pack_counts(status: np.ndarray, counts: np.ndarray) -> bytes:
    status = np.asarray(status)
    counts = np.asarray(counts)
    n = counts.shape[0]
    if counts.shape != (n, N_CHANNELS) or status.shape != (n,):
        raise ValueError(f"counts must be (n, {N_CHANNELS}) and status (n,), got {counts.shape}, {status.shape}")
    if not 1 <= n <= MAX_SAMPLES_PER_FRAME:
        raise ValueError(f"1..{MAX_SAMPLES_PER_FRAME} samples per frame, got {n}")
    c = counts.astype(np.int64)
    if c.min() < COUNT_MIN or c.max() > COUNT_MAX:
        raise ValueError("counts outside the 24-bit two's-complement range")
    s = status.astype(np.int64)
    if s.min() < 0 or s.max() > 0xFFFF:
        raise ValueError("status outside u16")
    rec = np.empty((n, SAMPLE_RECORD_BYTES), dtype=np.uint8)
    rec[:, 0] = s & 0xFF
    rec[:, 1] = s >> 8
    u = c & 0xFFFFFF
    rec[:, 2::3] = u & 0xFF
    rec[:, 3::3] = (u >> 8) & 0xFF
    rec[:, 4::3] = (u >> 16) & 0xFF
    return rec.tobytes()


def _body(msg: Message) -> tuple[int, bytes]:
    if isinstance(msg, DataFrame):
        samples = _pack_counts(msg.status, msg.counts)
        return T_DATA, struct.pack("<IQB", msg.seq & 0xFFFFFFFF, msg.timestamp_us, msg.n) + samples
    if isinstance(msg, DeviceInfo):
        dev_id = msg.device_id.encode("ascii")
        if len(dev_id) > DEVICE_ID_BYTES:
            raise ValueError(f"device_id longer than {DEVICE_ID_BYTES} bytes")
        if not 1 <= len(msg.supported_rates) <= MAX_RATES:
            raise ValueError(f"1..{MAX_RATES} supported rates")
        try:
            chans = bytes(CHANNELS.index(c) for c in msg.channel_map)
        except ValueError:
            raise ValueError(f"channel_map entries must be in {CHANNELS}") from None
        b = struct.pack("<B16s3BBBHB", msg.token, dev_id, *msg.firmware_version, msg.protocol_version,
                        1 if msg.streaming else 0, msg.rate_hz, msg.samples_per_frame)
        b += struct.pack(f"<B{len(msg.supported_rates)}H", len(msg.supported_rates), *msg.supported_rates)
        b += struct.pack("<BIIHB", msg.gain, msg.vref_uv, msg.lsb_pv,
                         lead_off_mask(msg.lead_off_electrodes), len(chans)) + chans
        return T_DEVICE_INFO, b
    if isinstance(msg, Ack):
        return T_ACK, struct.pack("<BB", msg.token, msg.command)
    if isinstance(msg, ErrorReply):
        text = msg.message.encode("utf-8")[:MAX_ERROR_TEXT]
        return T_ERROR, struct.pack("<BBB", msg.token, msg.command, msg.code) + text
    if isinstance(msg, SetRate):
        return T_SET_RATE, struct.pack("<BH", msg.token, msg.rate_hz)
    t = _COMMAND_TYPES.get(type(msg))
    if t is not None:
        return t, struct.pack("<B", msg.token)
    raise TypeError(f"not a protocol message: {msg!r}")


def encode_payload(msg: Message) -> bytes:
    """Message -> un-stuffed payload (version, type, body, CRC-32). Useful for test vectors."""
    t, body = _body(msg)
    head = bytes((PROTOCOL_VERSION, t)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def encode(msg: Message) -> bytes:
    """Message -> bytes on the wire: COBS(payload) followed by the 0x00 delimiter."""
    return cobs_encode(encode_payload(msg)) + b"\x00"


# ---------------------------------------------------------------------------------------------
# decode


def _unpack_counts(payload: bytes, offset: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised: n records of (u16 status, 8 x int24 LE) -> status (n,) uint16, counts (n, 8) int32."""
    rec = np.frombuffer(payload, dtype=np.uint8, count=n * SAMPLE_RECORD_BYTES, offset=offset)
    rec = rec.reshape(n, SAMPLE_RECORD_BYTES)
    status = rec[:, :2].copy().view("<u2").reshape(n)
    b = rec[:, 2:].reshape(n, N_CHANNELS, 3)
    wide = np.empty((n, N_CHANNELS, 4), dtype=np.uint8)
    wide[:, :, :3] = b
    wide[:, :, 3] = (b[:, :, 2] >> 7) * np.uint8(0xFF)          # sign extension
    counts = wide.view("<i4").reshape(n, N_CHANNELS)
    return status.astype(np.uint16), counts.astype(np.int32)


def decode_payload(payload: bytes) -> Message:
    """Un-stuffed payload -> message. Raises a ProtocolError subclass for anything not exactly right."""
    if len(payload) < _HDR + _CRC:
        raise MalformedError(f"payload of {len(payload)} bytes is shorter than header + CRC")
    (crc,) = struct.unpack_from("<I", payload, len(payload) - _CRC)
    if zlib.crc32(memoryview(payload)[:-_CRC]) != crc:
        raise CrcError("CRC-32 mismatch")
    version, t = payload[0], payload[1]
    if version != PROTOCOL_VERSION:
        raise VersionError(f"protocol version {version}, this host speaks {PROTOCOL_VERSION}")
    body_len = len(payload) - _HDR - _CRC
    o = _HDR
    if t == T_DATA:
        if body_len < _DATA_FIXED:
            raise MalformedError("DATA body too short")
        seq, ts, n = struct.unpack_from("<IQB", payload, o)
        if not 1 <= n <= MAX_SAMPLES_PER_FRAME or body_len != _DATA_FIXED + n * SAMPLE_RECORD_BYTES:
            raise MalformedError(f"DATA with n={n} has {body_len} body bytes")
        status, counts = _unpack_counts(payload, o + _DATA_FIXED, n)
        return DataFrame(seq, ts, status, counts)
    if t == T_DEVICE_INFO:
        return _decode_info(payload, body_len)
    if t == T_ACK:
        if body_len != 2:
            raise MalformedError("ACK body must be 2 bytes")
        return Ack(*struct.unpack_from("<BB", payload, o))
    if t == T_ERROR:
        if not 3 <= body_len <= 3 + MAX_ERROR_TEXT:
            raise MalformedError("ERROR body length")
        token, cmd, code = struct.unpack_from("<BBB", payload, o)
        text = bytes(payload[o + 3:o + body_len]).decode("utf-8", errors="replace")
        return ErrorReply(token, cmd, code, text)
    if t == T_SET_RATE:
        if body_len != 3:
            raise MalformedError("SET_RATE body must be 3 bytes")
        token, rate = struct.unpack_from("<BH", payload, o)
        return SetRate(token, rate)
    if t in _TYPE_COMMANDS:
        if body_len != 1:
            raise MalformedError("command body must be 1 byte (token)")
        return _TYPE_COMMANDS[t](payload[o])
    raise UnknownTypeError(f"message type 0x{t:02x}")


_INFO_FIXED = struct.calcsize("<B16s3BBBHB")


def _decode_info(payload: bytes, body_len: int) -> DeviceInfo:
    o = _HDR
    end = _HDR + body_len
    try:
        token, dev_id, fw0, fw1, fw2, pver, flags, rate, spf = struct.unpack_from("<B16s3BBBHB", payload, o)
        o += _INFO_FIXED
        (n_rates,) = struct.unpack_from("<B", payload, o)
        o += 1
        if not 1 <= n_rates <= MAX_RATES:
            raise MalformedError("DEVICE_INFO rate count")
        rates = struct.unpack_from(f"<{n_rates}H", payload, o)
        o += 2 * n_rates
        gain, vref_uv, lsb_pv, mask, n_ch = struct.unpack_from("<BIIHB", payload, o)
        o += struct.calcsize("<BIIHB")
    except struct.error:
        raise MalformedError("DEVICE_INFO too short") from None
    if o + n_ch != end:
        raise MalformedError("DEVICE_INFO length does not match its channel count")
    codes = payload[o:end]
    if any(c >= len(CHANNELS) for c in codes):
        raise MalformedError("DEVICE_INFO channel code out of range")
    if mask >> len(ELECTRODES):
        raise MalformedError("DEVICE_INFO lead-off mask has undefined bits")
    try:
        device_id = dev_id.rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError:
        raise MalformedError("DEVICE_INFO device id is not ASCII") from None
    return DeviceInfo(device_id=device_id, firmware_version=(fw0, fw1, fw2), rate_hz=rate,
                      supported_rates=tuple(rates), gain=gain, vref_uv=vref_uv, lsb_pv=lsb_pv,
                      channel_map=tuple(CHANNELS[c] for c in codes),
                      lead_off_electrodes=mask_electrodes(mask), samples_per_frame=spf,
                      streaming=bool(flags & 1), protocol_version=pver, token=token)


def decode(frame: bytes) -> Message:
    """One wire frame (COBS bytes, with or without the trailing 0x00) -> message, or ProtocolError."""
    if frame.endswith(b"\x00"):
        frame = frame[:-1]
    if b"\x00" in frame:
        raise FramingError("0x00 inside a frame")
    return decode_payload(cobs_decode(frame))
