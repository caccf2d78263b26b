"""Why a wire frame was refused: one exception class per reason.

Why a module of its own: the COBS layer (cobs.py), the payload decoder (protocol.py) and the stream
decoder (frame_decoder.py) all raise or count these, and each reason is counted separately in
DecoderStats, so a damaged cable (CRC errors) is told apart from a wrong firmware (version, type).
Import them from firmware_bridge.protocol, which re-exports them.
"""
from __future__ import annotations


class ProtocolError(ValueError):
    """A frame that must not be accepted. Subclasses say why (the decoder counts them separately)."""


class FramingError(ProtocolError):
    """COBS structure broken (a code byte points past the end of the frame)."""


class CrcError(ProtocolError):
    """CRC-32 mismatch: the bytes were damaged on the way."""


class VersionError(ProtocolError):
    """Protocol version byte this host does not speak."""


class UnknownTypeError(ProtocolError):
    """Message type code not defined in this protocol version."""


class MalformedError(ProtocolError):
    """CRC fine but the body does not match its type (length, counts, codes)."""
