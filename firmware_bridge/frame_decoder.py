"""The receiving end of the wire: a byte stream in, the messages of every intact frame out.

Why a module of its own: protocol.py says what one frame means; this says how a receiver survives a
stream that starts mid-frame, carries damaged frames or never sends a delimiter. It is the same for the
host driver, the simulator (which decodes host commands) and the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cobs import cobs_decode
from .protocol import MAX_ENCODED, Message, decode_payload
from .protocol_errors import CrcError, FramingError, ProtocolError, UnknownTypeError, VersionError


@dataclass
class DecoderStats:
    """What the decoder accepted and what it threw away (bytes_discarded includes rejected frames)."""
    frames_ok: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    malformed: int = 0
    bad_version: int = 0
    unknown_type: int = 0
    oversize: int = 0
    bytes_discarded: int = 0

    @property
    def frames_rejected(self) -> int:
        return (self.crc_errors + self.framing_errors + self.malformed + self.bad_version
                + self.unknown_type + self.oversize)

    def count_refused(self, error: ProtocolError, n_bytes: int) -> None:
        """One frame of n_bytes refused: counted under its reason (first match in _REASONS, else malformed)."""
        reason = next((name for cls, name in _REASONS if isinstance(error, cls)), "malformed")
        setattr(self, reason, getattr(self, reason) + 1)
        self.bytes_discarded += n_bytes


#: Which DecoderStats counter each refusal reason adds to; any other ProtocolError counts as malformed.
_REASONS: tuple[tuple[type[ProtocolError], str], ...] = (
    (CrcError, "crc_errors"), (FramingError, "framing_errors"), (VersionError, "bad_version"),
    (UnknownTypeError, "unknown_type"))


class FrameDecoder:
    """Feed it arbitrary chunks of bytes; get back the messages of every intact frame.

    Never raises on input bytes: damaged frames are counted and dropped, and decoding resumes at
    the next 0x00, so at most the frame that was hit is lost. Input longer than MAX_ENCODED without
    a delimiter is discarded rather than buffered, so memory stays bounded whatever arrives.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self.max_encoded = max_encoded
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._skipping = False      # inside an over-long run: drop until the next delimiter

    def reset(self) -> None:
        """Forget any partial frame (e.g. after reopening the port)."""
        if self._buf:
            self.stats.bytes_discarded += len(self._buf)
        self._buf.clear()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[Message]:
        buf = self._buf
        buf += chunk
        out: list[Message] = []
        stats = self.stats
        start = 0
        while True:
            z = buf.find(0, start)
            if z < 0:
                break
            if self._skipping:
                stats.bytes_discarded += z - start
                self._skipping = False
            elif z - start > self.max_encoded:
                stats.oversize += 1
                stats.bytes_discarded += z - start
            elif z > start:
                frame = bytes(buf[start:z])
                try:
                    msg = decode_payload(cobs_decode(frame))
                except ProtocolError as e:
                    stats.count_refused(e, len(frame))
                else:
                    stats.frames_ok += 1
                    out.append(msg)
            start = z + 1
        if start:
            del buf[:start]
        if len(buf) > self.max_encoded:
            if not self._skipping:
                stats.oversize += 1
            stats.bytes_discarded += len(buf)
            buf.clear()
            self._skipping = True
        return out
