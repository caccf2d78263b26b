"""The reference C encoder/parser (firmware_bridge/firmware) produces exactly the Python protocol's bytes.

Compiled with the host C compiler (skipped, with the reason, when there is none).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge import protocol as P

FW = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler (cc/gcc/clang) on this machine")
    exe = tmp_path_factory.mktemp("fw") / "ecg_selftest"
    subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-o", str(exe),
                    str(FW / "ecg_wire.c"), str(FW / "selftest_host.c")], check=True, capture_output=True)
    commands = [P.GetInfo(1), P.Start(2), P.Stop(3), P.SetRate(4, 1000)]
    stream = b"".join(P.encode(c) for c in commands)
    bad = bytearray(P.encode(P.SetRate(5, 250)))
    bad[3] ^= 0x40                                                  # CRC must reject this one
    stream += b"\x13\x37\x00" + bytes(bad) + b"\x00" + P.encode(P.Start(6))
    out = subprocess.run([str(exe)], input=stream.hex(" "), capture_output=True, text=True, check=True).stdout
    lines = {}
    for line in out.splitlines():
        key, _, rest = line.partition(" ")
        lines.setdefault(key, []).append(rest)
    return lines


def _wire(line: str) -> bytes:
    return bytes.fromhex(line)


def test_c_crc_and_cobs(selftest):
    assert selftest["crc32"] == ["cbf43926"]
    assert _wire(selftest["cobs254"][0]) == P.cobs_encode(bytes(range(1, 255)))


VECTOR_DATA = P.DataFrame(
    seq=1, timestamp_us=20000, status=np.array([0x0000, 0x0002], dtype=np.uint16),
    counts=np.array([[0, 1, -1, 8388607, -8388608, 1000, -1000, 123456],
                     [21000, -21000, 256, -256, 65536, -65536, 2, -2]], dtype=np.int32))
VECTOR_INFO = P.DeviceInfo(
    device_id="ECGFE-0001", firmware_version=(1, 2, 3), rate_hz=500, supported_rates=(250, 500, 1000),
    gain=6, vref_uv=2_400_000, lsb_pv=47684, samples_per_frame=10, streaming=False, token=1)


def test_c_frames_equal_python_frames(selftest):
    # the same messages as the documented vectors in docs/wire_protocol.md / test_firmware_protocol.py
    assert _wire(selftest["data"][0]) == P.encode(VECTOR_DATA)
    assert _wire(selftest["info"][0]) == P.encode(VECTOR_INFO)
    assert _wire(selftest["ack"][0]) == P.encode(P.Ack(2, P.T_START))
    assert _wire(selftest["error"][0]) == P.encode(P.ErrorReply(4, P.T_SET_RATE, P.E_BAD_ARGUMENT, "rate"))


def test_c_full_frame_decodes_in_python(selftest):
    frame = P.decode(_wire(selftest["data40"][0]))
    assert isinstance(frame, P.DataFrame)
    assert frame.seq == 0xFFFFFFFF and frame.timestamp_us == 0x0123456789ABCDEF and frame.n == 40
    x = 12345
    expected = np.empty((40, 8), np.int64)
    for i in range(40):
        for c in range(8):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            expected[i, c] = ((x >> 8) & 0xFFFFFF) - 8388608
    assert np.array_equal(frame.counts, expected)
    assert [P.mask_electrodes(int(s)) for s in frame.status[:8]] == \
        [("RA", "V6"), (), (), (), (), (), (), ("RA", "V6")]


def test_c_command_parser(selftest):
    assert selftest["cmd"] == ["10 1 0", "11 2 0", "12 3 0", "13 4 1000", "11 6 0"]
    assert selftest["bad_frames"] == ["2"]                        # the junk and the damaged SET_RATE


def test_c_ads1298_status_mapping(selftest):
    assert P.mask_electrodes(int(selftest["lead_off"][0], 16)) == ("RA", "LA", "V6")
