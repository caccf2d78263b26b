"""The window assembler resamples when a window is due, not per wire frame (issue 17) - and nothing changes.

Real PTB-XL records joined into one 420 s stream, fed as the driver delivers it (10-sample blocks = one
wire frame at 500 Hz), with a gap in the middle. Each window must be the one the offline resampler gives
for the same samples (bit for bit), and be emitted at the very block that completes it: the block holding
the native sample the window's last 100 Hz sample needs (the resampler's look-ahead), not later.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge_app.pipeline import _resampler_factory, read_record, record_blocks
from edge_app.signal_chain.conditioning import StreamingResampler, resample_to_model_rate
from edge_app.signal_chain.contract import N_SAMPLES
from edge_app.windowing import WindowAssembler

ROOT = Path(__file__).resolve().parents[1]
HR = sorted(p.with_suffix("") for p in (ROOT / "tests/fixtures/ptbxl_official_sample/records500").rglob("*_hr.hea"))


def test_windows_equal_offline_and_are_emitted_at_the_completing_block():
    x = np.vstack([read_record(p)[0] for p in HR[:12]])              # 120 s
    blocks = record_blocks(x, 500.0, block_s=0.02)                    # 10 samples each
    blocks[3000:] = [dataclasses.replace(b, first_index=b.first_index + 250)   # 250 samples lost at 60 s:
                     for b in blocks[3000:]]                                    # a new segment
    wa = WindowAssembler(500.0, 5.0, _resampler_factory)
    emitted: list[tuple[int, object]] = []
    for i, b in enumerate(blocks):
        emitted += [(i, w) for w in wa.push(b)]
    emitted += [(len(blocks), w) for w in wa.flush()]
    rs = StreamingResampler(500.0)
    starts = [int(w.start_index) for _, w in emitted]
    # first segment 0-60 s: windows at 0, 5, ..., 45 s (the one at 50 s would need samples past the gap);
    # second segment from 60.5 s: windows every 5 s again, the last completed by the flush
    assert starts[:11] == [2500 * k for k in range(10)] + [30250]
    assert starts[-1] == 30250 + 2500 * 10 and len(starts) == 21
    for i, w in emitted:
        seg0 = 0 if w.start_index < 30000 else 30250
        seg = x[:30000] if seg0 == 0 else x[30000:]
        off = resample_to_model_rate(seg, 500.0)
        s100 = (w.start_index - seg0) // 5
        assert np.array_equal(w.model_uv, off[s100:s100 + N_SAMPLES]), w.start_index
        assert np.array_equal(w.native_uv, seg[w.start_index - seg0:w.end_index - seg0])
        if i < len(blocks):
            last = s100 + N_SAMPLES - 1
            need_row = (last * rs.down + rs.half) // rs.up                 # native row of the last tap
            first_row_of_block = blocks[i].first_index - seg0
            assert first_row_of_block <= need_row < first_row_of_block + blocks[i].n, (w.start_index, i)
