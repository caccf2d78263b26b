"""Windowing: streaming windows equal the offline chain; a gap resets the window; stride and first window."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.pipeline import _resampler_factory, read_record
from edge_app.signal_chain.conditioning import resample_to_model_rate
from edge_app.windowing import Ring, WindowAssembler
from firmware_bridge.samples import SampleBlock

REC = Path(__file__).resolve().parents[1] / "edge_app" / "data" / "records"


def _long_signal() -> np.ndarray:
    return np.concatenate([read_record(REC / f"{r}_hr")[0] for r in ("00387", "00062", "00181")])  # 30 s


def _blocks(x, fs=500, sizes=(10, 7, 33, 1, 50), start=0, gaps=None):
    i, k, offset = 0, 0, 0
    gaps = gaps or {}
    while i < len(x):
        n = sizes[k % len(sizes)]
        seg = x[i:i + n]
        offset += gaps.get(i, (0, 0))[1]
        yield SampleBlock(first_index=start + i + offset, fs=fs, leads_uv=seg,
                          lead_off=np.zeros((len(seg), 9), bool), gap_before=gaps.get(i, (0, 0))[0])
        i += n
        k += 1


def test_ring_wraps_and_refuses_evicted_rows():
    r = Ring(10, 1)
    r.append(np.arange(7)[:, None])
    r.append(np.arange(7, 15)[:, None])
    assert r.get(5, 15)[:, 0].tolist() == list(range(5, 15))
    with pytest.raises(IndexError):
        r.get(4, 6)


def test_streaming_windows_equal_offline_resampling_of_the_same_samples():
    x = _long_signal()
    wa = WindowAssembler(500, 5.0, _resampler_factory)
    wins = [w for b in _blocks(x) for w in wa.push(b)]
    assert [w.start_s for w in wins] == [0.0, 5.0, 10.0, 15.0]   # [20,30) needs the resampler's lookahead
    wins += wa.flush()
    assert [w.start_s for w in wins] == [0.0, 5.0, 10.0, 15.0, 20.0]
    y = resample_to_model_rate(x, 500)
    for w in wins:
        s = int(w.start_s * 100)
        assert np.max(np.abs(w.model_uv - y[s:s + 1000])) < 1e-6
        assert np.array_equal(w.native_uv, x[w.start_index:w.end_index])
        assert not w.gap_before


def test_gap_resets_the_window_and_is_reported():
    x = _long_signal()
    # 200 samples lost before input sample 6000 (12 s): the stream index jumps by 200.
    gaps = {6000: (200, 200)}
    wa = WindowAssembler(500, 5.0, _resampler_factory)
    wins = [w for b in _blocks(x, sizes=(50,), gaps=gaps) for w in wa.push(b)]
    assert [w.start_index for w in wins] == [0, 6200, 8700]
    assert [w.gap_before for w in wins] == [False, True, False]
    assert wa.gaps and wa.gaps[0].missing == 200
    for w in wins:                          # no window spans the gap [6000, 6200)
        assert not (w.start_index < 6200 and w.end_index > 6000)


def test_index_jump_without_gap_flag_and_unknown_gap_also_reset():
    x = _long_signal()[:9000]
    wa = WindowAssembler(500, 5.0, _resampler_factory)
    blocks = list(_blocks(x, sizes=(50,)))
    out = []
    for k, b in enumerate(blocks):
        if k == 20:                          # device reset: unknown gap
            b = SampleBlock(b.first_index, 500, b.leads_uv, b.lead_off, gap_before=-1, events=("device_reset",))
        out += wa.push(b)
    assert out and out[0].start_index == 1000 and out[0].gap_before and out[0].events == ("device_reset",)


def test_after_an_electrode_off_window_the_next_starts_right_after_the_last_lead_off_sample():
    x = _long_signal()
    wa = WindowAssembler(500, 5.0, _resampler_factory)
    out = []
    for b in _blocks(x, sizes=(50,)):
        for w in wa.push(b):
            out.append(w)
            if w.start_index == 0:
                wa.retry_after(w, 1499)          # electrodes attached at 3.0 s
    assert [w.start_index for w in out][:3] == [0, 1500, 4000]


def test_window_carries_the_front_end_clock_of_its_first_sample_across_gaps():
    """device_time_us = the holding block's device timestamp + the sample's offset in that block, also after a
    gap of unknown size where the stream index does not advance but the front end's clock does."""
    x = _long_signal()                        # 30 s
    wa = WindowAssembler(500, 2.0, _resampler_factory)
    t0, out, k = 7_000_000, [], 0
    i = 0
    sizes = (10, 7, 33, 1, 50)
    index_shift, clock_shift = 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        seg = x[i:i + n]
        gap, events = 0, ()
        if i <= 9000 < i + n:                     # reconnect at input sample ~9000: 1.5 s of device time lost
            gap, events, clock_shift = -1, ("reconnected",), 750
        out += wa.push(SampleBlock(first_index=i + index_shift, fs=500, leads_uv=seg,
                                   lead_off=np.zeros((len(seg), 9), bool), gap_before=gap, events=events,
                                   device_time_us=t0 + (i + clock_shift) * 2000))
        i += n
        k += 1
    assert [w.start_index for w in out][:3] == [0, 1000, 2000] and any(w.gap_before for w in out)
    for w in out:
        shift = clock_shift if w.start_index >= 8900 else 0
        assert w.device_time_us == t0 + (w.start_index + shift) * 2000, (w.start_index, w.device_time_us)
    first_after = [w for w in out if w.gap_before][0]
    assert wa.gaps[0].device_time_us is not None and first_after.device_time_us == wa.gaps[0].device_time_us
    # blocks without a device clock (a replayed record) give None, not a made-up time
    wb = WindowAssembler(500, 5.0, _resampler_factory)
    assert all(w.device_time_us is None for b in _blocks(x) for w in wb.push(b))
