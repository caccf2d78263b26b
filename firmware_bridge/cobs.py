"""COBS byte stuffing: the framing layer of the wire (docs/wire_protocol.md, "Framing").

Why COBS with a 0x00 delimiter: a receiver that starts mid-stream, or sees garbage, resynchronises at
the next 0x00 and never has to guess where a frame starts. The C twins are ecg_cobs_encode /
ecg_cobs_decode in firmware/ecg_wire.c (tests/test_firmware_c_reference.py checks both give the same bytes).
Import these from firmware_bridge.protocol, which re-exports them.
"""
from __future__ import annotations

from .protocol_errors import FramingError


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): output contains no 0x00.

    Same output as the classic C encoder (a full 254-byte group at the very end is followed by 0x01).
    """
    out = bytearray()
    for block in bytes(data).split(b"\x00"):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(enc: bytes) -> bytes:
    """Inverse of cobs_encode; raises FramingError on a structurally impossible input.

    Fast path (why it looks odd): collect the groups and join them with 0x00 in one C call; only a
    frame with a full 254-byte group (code 0xFF, no implied zero) takes the general loop.
    """
    parts = []
    append = parts.append
    i = 0
    n = len(enc)
    long_group = False
    while i < n:
        code = enc[i]
        if code == 0:
            raise FramingError("0x00 inside a COBS frame")
        j = i + code
        if j > n:
            raise FramingError("COBS group runs past the end of the frame")
        if code == 0xFF:
            long_group = True
        append(enc[i + 1:j])
        i = j
    if not long_group:
        return b"\x00".join(parts)
    out = bytearray()
    i = 0
    while i < n:
        code = enc[i]
        j = i + code
        out += enc[i + 1:j]
        if code != 0xFF and j < n:
            out.append(0)
        i = j
    return bytes(out)
