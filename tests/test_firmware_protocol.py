"""Wire protocol: fixed test vectors (shared with docs/wire_protocol.md) and decoder fuzzing.

The vectors are hard-coded hex, not produced by the encoder under test, so a change that breaks
compatibility with existing firmware fails here.
"""
from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.frame_decoder import FrameDecoder


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", "").replace("\n", ""))


VECTOR_DATA = P.DataFrame(
    seq=1, timestamp_us=20000, status=np.array([0x0000, 0x0002], dtype=np.uint16),
    counts=np.array([[0, 1, -1, 8388607, -8388608, 1000, -1000, 123456],
                     [21000, -21000, 256, -256, 65536, -65536, 2, -2]], dtype=np.int32))
VECTOR_DATA_PAYLOAD = h("""
01 01 01 00 00 00 20 4e 00 00 00 00 00 00 02 00 00 00 00 00 01 00 00 ff ff ff ff ff 7f 00 00 80
e8 03 00 18 fc ff 40 e2 01 02 00 08 52 00 f8 ad ff 00 01 00 00 ff ff 00 00 01 00 00 ff 02 00 00
fe ff ff 45 3a 06 9f""")
VECTOR_DATA_WIRE = h("""
04 01 01 01 01 01 03 20 4e 01 01 01 01 01 02 02 01 01 01 01 02 01 01 07 ff ff ff ff ff 7f 01 04
80 e8 03 08 18 fc ff 40 e2 01 02 03 08 52 04 f8 ad ff 02 01 01 03 ff ff 01 02 01 01 03 ff 02 01
08 fe ff ff 45 3a 06 9f 00""")
VECTOR_INFO = P.DeviceInfo(
    device_id="ECGFE-0001", firmware_version=(1, 2, 3), rate_hz=500, supported_rates=(250, 500, 1000),
    gain=6, vref_uv=2_400_000, lsb_pv=47684, samples_per_frame=10, streaming=False, token=1)
VECTOR_INFO_PAYLOAD = h("""
01 02 01 45 43 47 46 45 2d 30 30 30 31 00 00 00 00 00 00 01 02 03 01 00 f4 01 0a 03 fa 00 f4 01
e8 03 06 00 9f 24 00 44 ba 00 00 ff 01 08 00 01 02 03 04 05 06 07 c8 d5 d1 99""")
VECTOR_INFO_WIRE = h("""
0e 01 02 01 45 43 47 46 45 2d 30 30 30 31 01 01 01 01 01 05 01 02 03 01 06 f4 01 0a 03 fa 06 f4
01 e8 03 06 03 9f 24 03 44 ba 01 04 ff 01 08 0c 01 02 03 04 05 06 07 c8 d5 d1 99 00""")
VECTOR_SMALL = [
    (P.GetInfo(1), "08 01 10 01 e2 91 46 c3 00"),
    (P.Start(2), "08 01 11 02 19 f1 54 43 00"),
    (P.Stop(3), "08 01 12 03 4c 92 7e 1f 00"),
    (P.SetRate(4, 1000), "0a 01 13 04 e8 03 5e a6 49 b1 00"),
    (P.Ack(2, P.T_START), "09 01 03 02 11 50 44 38 c3 00"),
    (P.ErrorReply(4, P.T_SET_RATE, P.E_BAD_ARGUMENT, "rate"), "0e 01 04 04 13 03 72 61 74 65 c4 c0 3d bd 00"),
]


def test_crc_check_value():
    assert zlib.crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("raw,enc", [
    ("00", "01 01"), ("11 22 00 33", "03 11 22 02 33"), ("11 00 00 00", "02 11 01 01 01"), ("", "01"),
])
def test_cobs_vectors(raw, enc):
    assert P.cobs_encode(h(raw)) == h(enc)
    assert P.cobs_decode(h(enc)) == h(raw)


def test_cobs_long_groups():
    d254 = bytes(range(1, 255))
    assert P.cobs_encode(d254) == b"\xff" + d254 + b"\x01"
    assert P.cobs_decode(b"\xff" + d254) == d254           # the other common form is accepted too
    d255 = bytes(range(1, 256))
    assert P.cobs_encode(d255) == b"\xff" + d254 + b"\x02\xff"
    for data in (bytes(1000), bytes([7]) * 1000, bytes(range(256)) * 4):
        assert P.cobs_decode(P.cobs_encode(data)) == data
        assert 0 not in P.cobs_encode(data)


def test_data_vector():
    assert P.encode_payload(VECTOR_DATA) == VECTOR_DATA_PAYLOAD
    assert P.encode(VECTOR_DATA) == VECTOR_DATA_WIRE
    got = P.decode(VECTOR_DATA_WIRE)
    assert got.equals(VECTOR_DATA)
    assert got.counts.dtype == np.int32 and got.status.dtype == np.uint16
    assert P.mask_electrodes(int(got.status[1])) == ("LA",)


def test_device_info_vector():
    assert P.encode_payload(VECTOR_INFO) == VECTOR_INFO_PAYLOAD
    assert P.encode(VECTOR_INFO) == VECTOR_INFO_WIRE
    info = P.decode(VECTOR_INFO_WIRE)
    assert info == VECTOR_INFO
    assert info.lsb_uv == pytest.approx(2.4e6 / 6 / 2 ** 23, rel=1e-5)


@pytest.mark.parametrize("msg,wire", VECTOR_SMALL)
def test_command_vectors(msg, wire):
    assert P.encode(msg) == h(wire)
    assert P.decode(h(wire)) == msg


def test_samples_per_frame_and_budget():
    assert [P.samples_per_frame(r) for r in (100, 250, 500, 1000)] == [2, 5, 10, 20]
    # the budget in the doc: worst-case wire bytes at 1000 Hz < 60 % of a 460,800-baud UART
    payload = 19 + 26 * 20
    wire = payload + 1 + payload // 254 + 1
    assert wire * 50 / 46080 < 0.60


def test_encoder_rejects_out_of_range():
    with pytest.raises(ValueError):
        P.encode(P.DataFrame(0, 0, np.zeros(1, np.uint16), np.full((1, 8), 1 << 23, np.int32)))
    with pytest.raises(ValueError):
        P.encode(P.DataFrame(0, 0, np.zeros(2, np.uint16), np.zeros((1, 8), np.int32)))
    with pytest.raises(ValueError):
        P.lead_off_mask(["RL"])


def test_decode_rejects_each_kind():
    payload = bytearray(VECTOR_DATA_PAYLOAD)
    payload[20] ^= 0x10
    with pytest.raises(P.CrcError):
        P.decode_payload(bytes(payload))
    # right CRC but wrong version / type / length
    def resign(body: bytes) -> bytes:
        return body + zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(P.VersionError):
        P.decode_payload(resign(b"\x02" + VECTOR_DATA_PAYLOAD[1:-4]))
    with pytest.raises(P.UnknownTypeError):
        P.decode_payload(resign(b"\x01\x7f\x00"))
    with pytest.raises(P.MalformedError):
        P.decode_payload(resign(VECTOR_DATA_PAYLOAD[:-5]))       # one sample byte short
    with pytest.raises(P.FramingError):
        P.decode(b"\x05\x01\x02")


# ------------------------------------------------------------------------------------------------
# fuzzing: the stream decoder never crashes, never yields a damaged frame, and resyncs within a frame


def _frames(rng: np.random.Generator, k: int, n: int = 10) -> list[P.DataFrame]:
    out = []
    for i in range(k):
        counts = rng.integers(-30000, 30000, size=(n, 8)).astype(np.int32)
        counts[rng.random((n, 8)) < 0.05] = P.COUNT_MAX
        status = rng.integers(0, 1 << 9, size=n).astype(np.uint16) * (rng.random(n) < 0.2)
        out.append(P.DataFrame(i, 1000 + 20000 * i, status.astype(np.uint16), counts))
    return out


def _check_subset(got, sent_by_seq):
    for m in got:
        assert isinstance(m, P.DataFrame)
        assert m.equals(sent_by_seq[m.seq]), "decoder yielded a frame that was not sent"


def test_fuzz_seeded_bitflips_truncation_splicing():
    """Seeded: 300 rounds of bit flips, dropped and inserted bytes, truncation and splicing."""
    rng = np.random.default_rng(20261130)
    pyrng = random.Random(7)
    frames = _frames(rng, 40)
    by_seq = {f.seq: f for f in frames}
    wires = [P.encode(f) for f in frames]
    for _ in range(300):
        stream = bytearray()
        damaged: set[int] = set()
        for i, w in enumerate(wires):
            w = bytearray(w)
            kind = pyrng.random()
            if kind < 0.15:                                    # bit flip (not the delimiter)
                pos = pyrng.randrange(len(w) - 1)
                w[pos] ^= 1 << pyrng.randrange(8)
                damaged.add(i)
            elif kind < 0.25:                                  # truncated: frame cut short
                w = w[:pyrng.randrange(1, len(w) - 1)] + b"\x00"
                damaged.add(i)
            elif kind < 0.32:                                  # spliced: head of this + tail of next
                other = wires[(i + 1) % len(wires)]
                w = w[:pyrng.randrange(1, len(w) - 1)] + other[pyrng.randrange(1, len(other) - 1):]
                damaged.add(i)
            elif kind < 0.40:                                  # random garbage before the frame
                stream += bytes(pyrng.randrange(256) for _ in range(pyrng.randrange(1, 80)))
                damaged.add(i)                                 # may merge with this frame
            stream += w
        dec = FrameDecoder()
        got = []
        pos = 0
        while pos < len(stream):                               # arbitrary chunking
            step = pyrng.randrange(1, 700)
            got += dec.feed(bytes(stream[pos:pos + step]))
            pos += step
        _check_subset(got, by_seq)
        got_seqs = {m.seq for m in got}
        # every undamaged frame comes through: resync costs at most the damaged frame itself
        assert set(range(len(wires))) - damaged <= got_seqs
        assert dec.stats.frames_ok == len(got)


def test_garbage_resync_within_one_frame():
    rng = np.random.default_rng(1)
    frames = _frames(rng, 3)
    dec = FrameDecoder()
    junk = bytes(rng.integers(1, 256, 5000, dtype=np.uint8))      # no 0x00: one over-long run
    got = dec.feed(junk + P.encode(frames[0]) + P.encode(frames[1]) + P.encode(frames[2]))
    # frame 0 is glued to the junk (no delimiter in between) and lost; frame 1 must come through
    assert [m.seq for m in got] == [1, 2]
    assert dec.stats.oversize == 1 and dec.stats.bytes_discarded >= 5000
    # a sender that prefixes a 0x00 loses nothing
    dec2 = FrameDecoder()
    got2 = dec2.feed(junk + b"\x00" + P.encode(frames[0]))
    assert [m.seq for m in got2] == [0]


def test_memory_bounded_on_endless_garbage():
    dec = FrameDecoder()
    rnd = random.Random(3)
    for _ in range(200):
        dec.feed(bytes(rnd.randrange(1, 256) for _ in range(997)))
        assert len(dec._buf) <= P.MAX_ENCODED
    assert dec.stats.frames_ok == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.lists(st.integers(1, 400), max_size=30))
def test_hypothesis_random_bytes_never_crash(data, cuts):
    dec = FrameDecoder()
    pos = 0
    out = []
    for c in cuts:
        out += dec.feed(data[pos:pos + c])
        pos += c
    out += dec.feed(data[pos:])
    # random bytes essentially never carry a valid CRC-32 + exact structure; whatever comes out is a message
    for m in out:
        assert isinstance(m, (P.DataFrame, P.DeviceInfo, P.Ack, P.ErrorReply, P.GetInfo, P.Start,
                              P.Stop, P.SetRate))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_hypothesis_mutated_frame_never_yields_wrong_samples(data):
    """Any mutation of a valid frame's bytes either yields exactly the original or nothing."""
    wire = bytearray(VECTOR_DATA_WIRE)
    n_mut = data.draw(st.integers(1, 6))
    for _ in range(n_mut):
        op = data.draw(st.sampled_from(["flip", "set", "del", "ins"]))
        pos = data.draw(st.integers(0, len(wire) - 1))
        if op == "flip":
            wire[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            wire[pos] = data.draw(st.integers(0, 255))
        elif op == "del" and len(wire) > 1:
            del wire[pos]
        else:
            wire.insert(pos, data.draw(st.integers(0, 255)))
    dec = FrameDecoder()
    got = dec.feed(bytes(wire) + b"\x00" + VECTOR_DATA_WIRE)
    datas = [m for m in got if isinstance(m, P.DataFrame)]
    for m in datas:
        assert m.equals(VECTOR_DATA)
    assert datas and datas[-1].equals(VECTOR_DATA)           # resynced: the next good frame arrives


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, P.MAX_SAMPLES_PER_FRAME), seq=st.integers(0, 2 ** 32 - 1),
       ts=st.integers(0, 2 ** 64 - 1), seed=st.integers(0, 2 ** 32 - 1))
def test_hypothesis_data_round_trip(n, seq, ts, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(P.COUNT_MIN, P.COUNT_MAX + 1, size=(n, 8)).astype(np.int32)
    status = rng.integers(0, 1 << 16, size=n).astype(np.uint16)
    f = P.DataFrame(seq, ts, status, counts)
    wire = P.encode(f)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) <= P.MAX_ENCODED + 1
    assert P.decode(wire).equals(f)


@settings(max_examples=100, deadline=None)
@given(dev=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=16),
       rates=st.lists(st.integers(1, 65535), min_size=1, max_size=8),
       lsb=st.integers(1, 2 ** 32 - 1), mask=st.integers(0, 511), streaming=st.booleans(),
       perm=st.permutations(list(range(8))))
def test_hypothesis_device_info_round_trip(dev, rates, lsb, mask, streaming, perm):
    from firmware_bridge.samples import CHANNELS
    info = P.DeviceInfo(dev, (1, 2, 3), rates[0], tuple(rates), 6, 2_400_000, lsb,
                        channel_map=tuple(CHANNELS[i] for i in perm),
                        lead_off_electrodes=P.mask_electrodes(mask), streaming=streaming, token=7)
    assert P.decode(P.encode(info)) == info
