"""Driver + simulator end to end over real pseudo-terminals, with real PTB-XL records.

Round trips must be sample-exact within the LSB quantisation; injected faults must appear in the
driver's output where they were injected (lead-off per electrode, gap sizes, resets, reconnects).
Most runs use speed=0 (the simulator writes as fast as the driver reads), so ten seconds of ECG take
well under a second.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from firmware_bridge import protocol as P
from firmware_bridge.driver import FrontEndDriver
from firmware_bridge.frame_decoder import FrameDecoder
from firmware_bridge.samples import CHANNELS, ELECTRODES, LEADS, derive_leads
from firmware_bridge.simulator import FrontEndSimulator, load_record

FIX = Path(__file__).parent / "fixtures" / "ptbxl_official_sample"
REC500 = FIX / "records500" / "00000" / "00018_hr"
REC100 = FIX / "records100" / "00000" / "00018_lr"
REC500_B = FIX / "records500" / "00000" / "00020_hr"
MEASURED = [LEADS.index(c) for c in CHANNELS]       # columns of the 12 leads that are measured


def collect(sim: FrontEndSimulator, drv: FrontEndDriver, max_s: float = 30.0, idle: float = 0.2,
            stop_when=None):
    """Iterate the driver until the simulator's record ended and the link went quiet."""
    blocks, statuses = [], []
    deadline = time.monotonic() + max_s
    for b in drv.blocks(idle):
        statuses.append(drv.status)
        if b is None:
            if sim.finished and not sim._out:
                break
            if stop_when is not None and stop_when(blocks):
                break
            assert time.monotonic() < deadline, f"timed out; stats {drv.stats}, sim {sim.stats}"
            continue
        blocks.append(b)
        if stop_when is not None and stop_when(blocks):
            break
    return blocks, statuses


def check_indices(blocks):
    """first_index is monotonic: each block starts after the previous one, plus any known gap."""
    end = blocks[0].first_index
    for b in blocks:
        assert b.first_index == end + max(b.gap_before, 0)
        assert b.leads_uv.shape == (b.n, 12) and b.lead_off.shape == (b.n, 9)
        end = b.first_index + b.n


def record_truth(rec: Path, fs: int) -> np.ndarray:
    """(n, 12) microvolts the driver should reproduce: record channels resampled independently."""
    fs_rec, uv = load_record(rec)
    if fs != fs_rec:
        from fractions import Fraction
        f = Fraction(fs, fs_rec)
        uv = resample_poly(uv, f.numerator, f.denominator, axis=0)
    return derive_leads(uv)


@pytest.fixture
def sims():
    made = []

    def make(*a, **kw):
        s = FrontEndSimulator(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.mark.parametrize("rec,sim_fs,drv_rate", [
    (REC500, 500, 500),            # 500 Hz record at 500 Hz: no resampling
    (REC100, 100, None),           # 100 Hz record at its own rate (driver keeps the device's rate)
    (REC100, 500, 500),            # 100 Hz record resampled to 500 Hz by the simulator
    (REC500_B, 250, 1000),         # boot at 250 Hz, host asks for 1000 Hz with SET_RATE
])
def test_round_trip_sample_exact_all_12_leads(sims, rec, sim_fs, drv_rate):
    sim = sims(rec, fs=sim_fs, speed=0, loop=False)
    with FrontEndDriver(sim.start(), rate_hz=drv_rate) as drv:
        blocks, _ = collect(sim, drv)
        fs = drv_rate or sim_fs
        assert drv.info.rate_hz == fs and all(b.fs == fs for b in blocks)
        assert drv.info.samples_per_frame == P.samples_per_frame(fs)
        lsb = drv.info.lsb_uv
        assert lsb == pytest.approx(2.4e6 / 6 / 2 ** 23, rel=1e-5)        # ADS1298, Vref 2.4 V, gain 6
        st = drv.stats
    check_indices(blocks)
    assert blocks[0].first_index == 0 and all(b.gap_before == 0 for b in blocks)
    got = np.concatenate([b.leads_uv for b in blocks])
    truth = record_truth(rec, fs)
    n_expected = truth.shape[0] - truth.shape[0] % P.samples_per_frame(fs)
    assert got.shape == (n_expected, 12)
    truth = truth[:n_expected]
    err = np.abs(got - truth)
    # measured channels: rounding to the nearest count; derived leads: at most one LSB
    assert err[:, MEASURED].max() <= 0.5 * lsb + 1e-9
    assert err.max() <= 1.0 * lsb + 1e-9
    assert not np.concatenate([b.lead_off for b in blocks]).any()
    assert st.crc_errors == 0 and st.frames_lost == 0 and st.samples == n_expected


def test_round_trip_matches_stored_limb_leads():
    """The derived III/aVR/aVL/aVF agree with PTB-XL's stored ones (1 uV record resolution)."""
    import wfdb
    r = wfdb.rdrecord(str(REC500))
    stored = r.p_signal * 1000.0
    derived = record_truth(REC500, 500)
    assert np.abs(stored - derived).max() <= 1.5 + 1e-6


def test_electrode_off_per_electrode(sims):
    faults = ["electrode_off:LA@1+1", "electrode_off:V3@2+1", "electrode_off:RA@3+0.5"]
    sim = sims(REC500, fs=500, speed=0, loop=False, faults=faults)
    with FrontEndDriver(sim.start()) as drv:
        blocks, _ = collect(sim, drv)
        lsb = drv.info.lsb_uv
    check_indices(blocks)
    lo = np.concatenate([b.lead_off for b in blocks])
    got = np.concatenate([b.leads_uv for b in blocks])
    truth = record_truth(REC500, 500)
    expected = np.zeros_like(lo)
    expected[500:1000, ELECTRODES.index("LA")] = True
    expected[1000:1500, ELECTRODES.index("V3")] = True
    expected[1500:1750, ELECTRODES.index("RA")] = True
    assert np.array_equal(lo, expected)
    rail_hi, rail_lo = P.COUNT_MAX * lsb, P.COUNT_MIN * lsb
    I, II, V3, V1 = LEADS.index("I"), LEADS.index("II"), LEADS.index("V3"), LEADS.index("V1")
    # LA floating: lead I (LA - RA) clips at the rail, lead II (LL - RA) is untouched
    assert np.allclose(got[500:1000, I], rail_hi)
    assert np.abs(got[500:1000, II] - truth[500:1000, II]).max() <= 0.5 * lsb + 1e-9
    # V3 floating: V3 clips, V1 untouched; RA floating: I and II clip low
    assert np.allclose(got[1000:1500, V3], rail_hi)
    assert np.abs(got[1000:1500, V1] - truth[1000:1500, V1]).max() <= 0.5 * lsb + 1e-9
    assert np.allclose(got[1500:1750, [I, II]], rail_lo)
    # outside the fault windows the signal is the record again
    assert np.abs(got[1750:, MEASURED] - truth[1750:len(got), MEASURED]).max() <= 0.5 * lsb + 1e-9


def test_gaps_sized_from_sequence_counter(sims):
    faults = ["drop:3@1", "drop:7@2", "corrupt:2@3"]
    sim = sims(REC500, fs=500, speed=0, loop=False, faults=faults, seed=5)
    with FrontEndDriver(sim.start()) as drv:
        blocks, _ = collect(sim, drv)
        st = drv.stats
        lsb = drv.info.lsb_uv
    check_indices(blocks)
    gaps = [(b.first_index, b.gap_before) for b in blocks if b.gap_before]
    # drop/corrupt fire at the frame starting at that second: 500, 1000, 1500 samples in
    assert gaps == [(500 + 30, 30), (1000 + 70, 70), (1500 + 20, 20)]
    assert st.frames_lost == 12 and st.samples_lost == 120
    assert st.crc_errors + st.bad_frames >= 2 and st.bytes_discarded > 0
    assert sim.stats.frames_dropped == 10 and sim.stats.frames_corrupted == 2
    # indices still line up with the record: each sample is the record sample at its index
    truth = record_truth(REC500, 500)
    for b in blocks:
        seg = truth[b.first_index:b.first_index + b.n]
        assert np.abs(b.leads_uv[:, MEASURED] - seg[:, MEASURED]).max() <= 0.5 * lsb + 1e-9


def test_device_reset_reported(sims):
    sim = sims(REC500, fs=500, speed=0, loop=False, faults=["reset@2", "reset@4"])
    with FrontEndDriver(sim.start()) as drv:
        blocks, _ = collect(sim, drv)
        st = drv.stats
        info = drv.info
    check_indices(blocks)
    resets = [b for b in blocks if "device_reset" in b.events]
    assert len(resets) == 2 and all(b.gap_before == -1 for b in resets)
    assert [b.first_index for b in resets] == [1000, 2000]        # restarts right after the last index
    assert st.device_resets == 2 and st.reconnects == 0
    assert info.streaming and info.rate_hz == 500
    assert sum(b.n for b in blocks) == 5000                       # nothing of the record lost


def test_noise_flat_saturation_mains(sims):
    faults = ["flat@1+0.5", "saturate@2+0.5", "mains:60:300@3+1", "noise:80@5+1", "wander:800@7+1"]
    sim = sims(REC500, fs=500, speed=0, loop=False, faults=faults, seed=3)
    with FrontEndDriver(sim.start()) as drv:
        blocks, _ = collect(sim, drv)
        lsb = drv.info.lsb_uv
    got = np.concatenate([b.leads_uv for b in blocks])
    truth = record_truth(REC500, 500)
    d = got - truth[:len(got)]
    assert np.all(got[500:750] == 0.0)
    assert np.allclose(got[1000:1250, MEASURED], P.COUNT_MAX * lsb)
    # mains: a 60 Hz line in the difference, of the injected amplitude (x per-channel gain 0.5..1)
    seg = d[1500:2000, LEADS.index("V1")]
    spec = np.abs(np.fft.rfft(seg)) / len(seg) * 2
    freqs = np.fft.rfftfreq(len(seg), 1 / 500)
    assert freqs[np.argmax(spec)] == pytest.approx(60, abs=1)
    assert 140 <= spec.max() <= 310
    noise_rms = d[2500:3000, MEASURED].std()
    assert 50 <= noise_rms <= 110
    assert np.abs(d[3500:4000, MEASURED]).max() > 300                # wander
    clean = np.r_[0:500, 750:1000, 1250:1500, 2000:2500, 3000:3500, 4000:len(got)]
    assert np.abs(d[clean][:, MEASURED]).max() <= 0.5 * lsb + 1e-9


def test_reconnect_after_pulled_cable_via_link(sims, tmp_path):
    link = tmp_path / "ecg-frontend"
    sim = sims(REC500, fs=500, speed=5, loop=True, faults=["disconnect:2.5@1"], link_path=link)
    path = sim.start()
    assert path == str(link) and os.path.realpath(link).startswith("/dev/pts/")
    with FrontEndDriver(path, backoff_initial_s=0.05, backoff_max_s=0.2) as drv:
        def stop_when(blocks):
            return any("reconnected" in b.events for b in blocks) and blocks[-1].first_index > 1500
        blocks, statuses = collect(sim, drv, max_s=20, idle=0.1, stop_when=stop_when)
        st = drv.stats
    check_indices(blocks)
    rec = [b for b in blocks if "reconnected" in b.events]
    assert len(rec) == 1 and rec[0].gap_before == -1
    before = sum(b.n for b in blocks[:blocks.index(rec[0])])
    assert rec[0].first_index == before and 0 < before <= 500    # in-flight bytes may be lost
    assert st.reconnects == 1 and sim.stats.disconnects == 1
    assert "no_device" in statuses
    assert os.path.islink(link) and os.path.realpath(link).startswith("/dev/pts/")   # the new pty


def test_no_device_yields_none_and_close_from_other_thread(tmp_path):
    drv = FrontEndDriver(str(tmp_path / "nothing-here"), backoff_initial_s=0.05, backoff_max_s=0.1)
    t0 = time.monotonic()
    got = []
    threading.Timer(0.8, drv.close).start()
    for b in drv.blocks(idle_timeout_s=0.2):
        got.append(b)
    elapsed = time.monotonic() - t0
    assert got and all(b is None for b in got) and 2 <= len(got) <= 8
    assert 0.7 <= elapsed < 3.0
    assert drv.status == "no_device" and "nothing-here" in drv.last_error


class HandDevice:
    """A device played by the test itself on a pty, to send exactly the bytes a test needs."""

    def __init__(self, rate=500):
        self.master, slave = os.openpty()
        import tty
        tty.setraw(slave)
        self.slave = slave
        self.path = os.ttyname(slave)
        self.rate = rate
        self.dec = FrameDecoder()
        self.stop = threading.Event()
        self.streaming = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def info(self, token):
        return P.DeviceInfo("HAND-1", (0, 0, 1), self.rate, (250, 500, 1000), 6, 2_400_000, 47684,
                            channel_map=("V1", "V2", "I", "II", "V3", "V4", "V5", "V6"),   # shuffled map
                            lead_off_electrodes=("RA", "LA", "LL"),
                            samples_per_frame=P.samples_per_frame(self.rate), token=token)

    def _answer(self):
        import select
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            for m in self.dec.feed(os.read(self.master, 4096)):
                if isinstance(m, P.GetInfo):
                    self.write(P.encode(self.info(m.token)))
                elif isinstance(m, (P.Start, P.Stop, P.SetRate)):
                    self.write(P.encode(P.Ack(m.token, P.message_type(m))))
                    if isinstance(m, P.Start):
                        self.streaming.set()

    def write(self, b: bytes):
        with self.lock:
            os.write(self.master, b)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


def test_hand_device_channel_map_garbage_wrap_and_backwards_seq():
    dev = HandDevice()
    drv = FrontEndDriver(dev.path)
    it = drv.blocks(0.2)
    try:
        rng = np.random.default_rng(0)
        # first block: wire order V1, V2, I, II, ... -> driver must reorder to I, II, V1..V6
        counts = np.arange(80, dtype=np.int32).reshape(10, 8) * 1000
        status = np.zeros(10, np.uint16)
        status[3] = P.lead_off_mask(["LL", "V2"])        # V2 has no comparator on this device: ignored

        def send_and_get(frames_bytes, k=1):
            dev.write(frames_bytes)
            res = []
            while len(res) < k:
                b = next(it)
                if b is not None:
                    res.append(b)
            return res
        for b in it:                                      # drive the handshake
            assert b is None
            if drv.status == "streaming":
                break
        assert dev.streaming.is_set()
        seq0 = 0xFFFFFFFE                                 # wraps to 0 after the second frame
        b = send_and_get(P.encode(P.DataFrame(seq0, 10, status, counts)))[0]
        lsb = 47684 / 1e6
        wire_ch = list(dev.info(0).channel_map)
        for c in CHANNELS:
            assert np.allclose(b.leads_uv[:, LEADS.index(c)], counts[:, wire_ch.index(c)] * lsb)
        assert b.lead_off[3].tolist() == [e == "LL" for e in ELECTRODES]
        # garbage (with and without delimiters), then the next frame: no exception, frame arrives
        junk = bytes(rng.integers(0, 256, 3000, dtype=np.uint8))
        b = send_and_get(junk + b"\x00" + P.encode(P.DataFrame(seq0 + 1, 30000, status, counts)))[0]
        assert b.gap_before == 0
        # seq wraps 0xFFFFFFFF -> 0 contiguous; then a jump of 4 frames -> gap 40
        b = send_and_get(P.encode(P.DataFrame(0, 50000, status, counts)))[0]
        assert b.gap_before == 0
        b = send_and_get(P.encode(P.DataFrame(5, 150000, status, counts)))[0]
        assert b.gap_before == 40
        # seq going backwards without a DEVICE_INFO, confirmed by the next frame: a reset, unknown gap
        b = send_and_get(P.encode(P.DataFrame(1, 20, status, counts)) + P.encode(P.DataFrame(2, 20020, status, counts)))[0]
        assert b.gap_before == -1 and b.events == ("device_reset",)
        st = drv.stats
        assert st.frames_lost == 4 and st.device_resets == 1 and st.bytes_discarded >= 2900
    finally:
        drv.close()
        for _ in it:
            pass
        dev.close()


def _hand_stream():
    """A HandDevice streaming through a driver; returns (dev, drv, it, send) where send(bytes) -> blocks."""
    dev = HandDevice()
    drv = FrontEndDriver(dev.path)
    it = drv.blocks(0.1)
    for b in it:                                          # drive the handshake
        if drv.status == "streaming":
            break

    def send(frames_bytes: bytes, settle_nones: int = 3) -> list:
        """Write, then collect blocks until the driver has been idle for a few idle periods."""
        dev.write(frames_bytes)
        out, nones = [], 0
        for b in it:
            if b is None:
                nones += 1
                if nones >= settle_nones:
                    break
            else:
                out.append(b)
                nones = 0
        return out
    return dev, drv, it, send


def test_sequence_jump_duplicates_and_frame_size_are_not_trusted():
    """Issue 14 item 5: one valid-CRC frame with seq jumped by ~2^31 must not report a 21-billion-sample
    gap or shift the index; duplicates are dropped; a frame of another size is refused with a reason."""
    dev, drv, it, send = _hand_stream()
    counts = np.arange(80, dtype=np.int32).reshape(10, 8)
    status = np.zeros(10, np.uint16)

    def frame(seq, k=None, n=10):
        k = seq if k is None else k                          # timestamp follows the frame slot k
        c = np.resize(counts, (n, 8)).astype(np.int32)
        return P.encode(P.DataFrame(seq & 0xFFFFFFFF, 1_000 + 20_000 * k, np.zeros(n, np.uint16), c))
    try:
        blocks = send(b"".join(frame(s) for s in range(5)))
        assert sum(b.n for b in blocks) == 50 and blocks[0].first_index == 0
        # one frame jumped by 2^31 - 1 (a forward jump under the wrap rule), then the stream goes on
        blocks = send(frame(5 + (1 << 31) - 1, k=5) + b"".join(frame(s) for s in range(6, 10)))
        assert [(b.first_index, b.gap_before, b.events) for b in blocks] == [(60, 10, ())], blocks
        st = drv.stats
        assert st.samples_lost == 10 and st.frames_lost == 1 and st.frames_refused == 1 and st.resyncs == 0
        # the same with a backwards jump: one lone frame, dropped, costs its slot only
        blocks = send(frame(3, k=10) + b"".join(frame(s) for s in range(11, 13)))
        assert [(b.first_index, b.gap_before) for b in blocks] == [(110, 10)]
        assert drv.stats.device_resets == 0
        # duplicated frames (the last one, and one a few frames back) are dropped, not passed on again
        blocks = send(frame(12) + frame(11) + frame(13) + frame(13) + frame(14))
        assert [(b.first_index, b.gap_before, b.n) for b in blocks] == [(130, 0, 20)]
        assert drv.stats.duplicates == 3
        # a frame with another sample count mid-stream is refused (the device announced 10 per frame)
        blocks = send(frame(15, n=7) + frame(16))
        assert [(b.first_index, b.gap_before, b.n) for b in blocks] == [(160, 10, 10)]
        assert drv.stats.frames_refused == 3 and "announced 10 per frame" in drv.last_refusal
        # a jump confirmed by the next frame is a real restart: unknown gap, reported, index not shifted
        blocks = send(b"".join(frame(s, k=s - 1_000_000 + 17) for s in range(1_000_000, 1_000_003)))
        assert [(b.first_index, b.gap_before, b.events, b.n) for b in blocks] == [(170, -1, ("sequence_jump",), 30)]
        st = drv.stats
        assert st.resyncs == 1 and st.samples_lost == 30 and st.frames_lost == 3
        assert st.samples == 170 and drv._next_index == 170 + st.samples_lost   # delivered + reported lost
        print(f"driver sequence cases: {st.frames_ok} frames, refused {st.frames_refused}, "
              f"duplicates {st.duplicates}, resyncs {st.resyncs}, samples lost {st.samples_lost}")
    finally:
        drv.close()
        for _ in it:
            pass
        dev.close()


def test_handshake_refuses_unsupported_rate(sims):
    sim = sims(REC500, fs=500, speed=0, loop=False)
    drv = FrontEndDriver(sim.start(), rate_hz=2000, backoff_initial_s=0.05)
    it = drv.blocks(0.1)
    assert next(it) is None
    assert drv.status == "no_device" and "2000 Hz" in drv.last_error and "offers" in drv.last_error
    drv.close()
    assert list(it) == []


def test_stall_then_restart_and_close_from_other_thread():
    """A device that goes quiet: 'stalled', then the driver re-handshakes; close() ends iteration."""
    dev = HandDevice()
    drv = FrontEndDriver(dev.path, stall_timeout_s=0.2, restart_after_s=0.6)
    it = drv.blocks(0.05)
    status = np.zeros(10, np.uint16)
    counts = np.zeros((10, 8), np.int32)
    try:
        for b in it:
            if drv.status == "streaming":
                break
        dev.streaming.clear()
        dev.write(P.encode(P.DataFrame(0, 0, status, counts)))
        seen = []
        deadline = time.monotonic() + 5
        while not dev.streaming.is_set():          # wait for the driver to START the device again
            b = next(it)
            seen.append(drv.status)
            assert time.monotonic() < deadline
        assert "stalled" in seen
        dev.write(P.encode(P.DataFrame(0, 0, status, counts)))
        b = next(x for x in it if x is not None)
        assert b.events == ("reconnected",) and b.gap_before == -1 and b.first_index == 10
        assert drv.stats.reconnects == 1
        # close from another thread while iterating: the iteration ends promptly
        threading.Timer(0.3, drv.close).start()
        t0 = time.monotonic()
        rest = list(it)
        assert all(x is None for x in rest) and time.monotonic() - t0 < 1.5
        assert drv._ser is None
    finally:
        drv.close()
        dev.close()


def test_silent_port_handshake_is_bounded():
    """A tty that never answers (wrong device, wrong baud): no hang, a clear error, None ticks."""
    import tty
    master, slave = os.openpty()
    tty.setraw(slave)
    drv = FrontEndDriver(os.ttyname(slave), handshake_timeout_s=0.3, backoff_initial_s=0.05)
    try:
        it = drv.blocks(0.1)
        t0 = time.monotonic()
        assert next(it) is None
        assert time.monotonic() - t0 < 2.0              # 2 x handshake_timeout_s, plus slack for a busy CI box
        assert drv.status == "no_device" and "no answer to GetInfo" in drv.last_error
        gaps = []
        for _ in range(4):
            t = time.monotonic()
            assert next(it) is None
            gaps.append(time.monotonic() - t)
        assert max(gaps) < 2.0, gaps
    finally:
        drv.close()
        os.close(master)
        os.close(slave)
