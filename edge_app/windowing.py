"""Sliding 10 s windows over the sample stream, never spanning a gap.

The assembler keeps two ring buffers of the current contiguous segment: the native-rate samples (for
the quality gate, heart rate and the stored raw strip) and the 100 Hz samples from the streaming
resampler (the model's input). A window is emitted as soon as both rings hold it: the first one as
soon as the first 10 s of a segment exist, then every `stride_s`.

Why reset on a gap: samples on both sides of a dropped run or a device reset are not one ECG; a
window across it would feed the model a discontinuity that looks like a conduction abnormality. So a
gap (gap_before != 0, or an index jump, or an fs change) starts a new segment, a new resampler (its
filter state belongs to the old signal), and the next window carries `gap_before=True`.

The 100 Hz output j of a segment is taken to correspond to native time seg_start + j / 100 s (the
streaming resampler compensates its own delay, which is what makes it identical to the offline
`resample_to_model_rate`).

Each window also carries the front end's own clock at its first sample (`device_time_us`): the
device timestamp of the SampleBlock holding that sample plus the sample's offset in the block
(k / fs * 1e6). Why: the stream index does not advance over a gap of unknown size (reconnect, device
reset), so only the device clock places a window on the front end's timeline after a cable pull.
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge_app.signal_chain.contract import FS_HZ, N_SAMPLES

if TYPE_CHECKING:
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger(__name__)


class Ring:
    """Fixed-capacity ring of rows addressed by absolute row number (0 = first row ever appended)."""

    def __init__(self, capacity: int, width: int, dtype: Any = np.float64):
        self.buf = np.zeros((capacity, width), dtype=dtype)
        self.capacity = capacity
        self.count = 0          # rows appended in total

    def append(self, x: np.ndarray) -> None:
        n = len(x)
        if n == 0:
            return
        if n >= self.capacity:
            x = x[-self.capacity:]
            self.count += n - self.capacity
            n = self.capacity
        pos = self.count % self.capacity
        first = min(n, self.capacity - pos)
        self.buf[pos:pos + first] = x[:first]
        if first < n:
            self.buf[:n - first] = x[first:]
        self.count += n

    def get(self, start: int, end: int) -> np.ndarray:
        """Rows [start, end) by absolute number; they must still be held."""
        if start < self.count - self.capacity or end > self.count or start > end:
            raise IndexError(f"rows [{start}, {end}) not held (have [{max(0, self.count - self.capacity)}, "
                             f"{self.count}))")
        idx = np.arange(start, end) % self.capacity
        return self.buf[idx]

    def clear(self) -> None:
        self.count = 0


@dataclass
class Window:
    start_index: int                # stream index of the first native sample
    end_index: int                  # stream index of the last native sample + 1
    fs: float
    native_uv: np.ndarray           # (n, 12) microvolts at fs
    lead_off: np.ndarray            # (n, 9) bool
    model_uv: np.ndarray            # (1000, 12) microvolts at 100 Hz
    gap_before: bool = False
    events: tuple[str, ...] = field(default_factory=tuple)
    device_time_us: int | None = None   # front-end clock at the first sample (None: blocks carried none)

    @property
    def start_s(self) -> float:
        return self.start_index / self.fs

    @property
    def end_s(self) -> float:
        return self.end_index / self.fs


@dataclass
class GapEvent:
    at_index: int
    missing: int                    # samples missing (-1 unknown)
    events: tuple[str, ...]
    device_time_us: int | None = None   # front-end clock at the first sample after the gap


def check_stride(stride_s: float, length_s: float = 10.0) -> None:
    """A stride must move forward (> 0) and not skip signal (<= the window length); anything else would make
    the assembler loop without progress or leave samples unanalysed. ValueError names the accepted range."""
    if not 0 < float(stride_s) <= float(length_s):
        raise ValueError(f"stride_s must be more than 0 and at most the window length ({length_s:g} s); "
                         f"got {stride_s!r}")


class WindowAssembler:
    """Feed SampleBlocks with `push`; get the windows that became complete."""

    def __init__(self, fs: float, stride_s: float, resampler_factory: Callable[[float], Any],
                 length_s: float = 10.0, keep_s: float | None = None):
        check_stride(stride_s, length_s)
        self.fs = float(fs)
        self.stride_s = float(stride_s)
        self.length_s = float(length_s)
        self.resampler_factory = resampler_factory
        self.n_native = int(round(self.length_s * self.fs))
        keep = keep_s if keep_s is not None else self.length_s + self.stride_s + 5.0
        self.native = Ring(int(keep * self.fs) + 1, 12)
        self.lead_off = Ring(int(keep * self.fs) + 1, 9, dtype=bool)
        self.model = Ring(int(keep * FS_HZ) + 1, 12)
        self.gaps: list[GapEvent] = []
        self._expected: int | None = None
        self._reset(0, gap=False)

    def _reset(self, seg_start: int, gap: bool, events: tuple[str, ...] = ()) -> None:
        self.seg_start = seg_start
        self.native.clear()
        self.lead_off.clear()
        self.model.clear()
        self._anchor_rows: list[int] = []     # segment row of a block's first sample ...
        self._anchor_us: list[int] = []       # ... and that block's device_time_us
        self.resampler = self.resampler_factory(self.fs)
        self._fed = 0                         # native rows of this segment handed to the resampler
        self.next_start_100 = 0               # next window start, in 100 Hz samples from seg_start
        self.pending_gap = gap
        self.pending_events = events

    def push(self, block: SampleBlock) -> list[Window]:
        """Add one SampleBlock; return completed windows (possibly none)."""
        if block.n == 0:
            return []
        if float(block.fs) != self.fs:
            raise ValueError(f"block at {block.fs} Hz fed to a {self.fs} Hz assembler")
        jump = self._expected is not None and block.first_index != self._expected
        if block.gap_before != 0 or jump or "device_reset" in block.events:
            missing = block.gap_before if block.gap_before != 0 else (block.first_index - (self._expected or 0))
            self.gaps.append(GapEvent(block.first_index, int(missing), tuple(block.events),
                                      None if block.device_time_us is None else int(block.device_time_us)))
            log.info("gap before sample %d (%s missing%s): starting a new window segment",
                     block.first_index, "unknown" if missing < 0 else missing,
                     f", events {list(block.events)}" if block.events else "")
            self._reset(block.first_index, gap=True, events=tuple(block.events))
        elif self._expected is None:
            self._reset(block.first_index, gap=False, events=tuple(block.events))
        self._expected = block.first_index + block.n
        if block.device_time_us is not None:
            self._anchor_rows.append(self.native.count)
            self._anchor_us.append(int(block.device_time_us))
            oldest = self.native.count - self.native.capacity
            if len(self._anchor_rows) > 256 and self._anchor_rows[128] <= oldest:
                del self._anchor_rows[:128], self._anchor_us[:128]
        native = np.asarray(block.leads_uv, dtype=np.float64)
        if self.native.count + len(native) - self._fed > self.native.capacity:
            # Unfed rows would be overwritten (a block larger than the ring): resample everything now.
            self._feed_resampler(force=True)
            self._append_resampled(self.resampler.process(native))
            self._fed += len(native)
        self.native.append(native)
        self.lead_off.append(np.asarray(block.lead_off, dtype=bool))
        self._feed_resampler()
        return self._emit()

    def _append_resampled(self, resampled: np.ndarray | None) -> None:
        if resampled is not None and len(resampled):
            self.model.append(np.asarray(resampled, dtype=np.float64))

    def _feed_resampler(self, force: bool = False) -> None:
        """Hand the resampler the native rows it has not seen yet, once the next window's last 100 Hz sample
        can be computed (or, with force, at the end of a stream).

        Why not every block: the 100 Hz samples are the same whatever the block size (the resampler sums its
        taps in the same order; tests/test_windowing_resample_when_due.py), and one call per window instead of
        one per 10-sample wire frame saves ~4 ms of per-call work per window (issue 17). A window is still
        emitted at the very block that completes it."""
        rs = self.resampler
        if not force and all(hasattr(rs, k) for k in ("up", "down", "half")):
            last = self.next_start_100 + N_SAMPLES - 1                  # the next window's last 100 Hz sample
            if self.native.count <= (last * rs.down + rs.half) // rs.up:    # needs this native row
                return
        if self._fed < self.native.count:
            self._append_resampled(rs.process(self.native.get(self._fed, self.native.count)))
            self._fed = self.native.count

    def device_time_us(self, row: int) -> int | None:
        """Front-end clock at segment row `row`: the holding block's device_time_us + the row's offset."""
        k = bisect.bisect_right(self._anchor_rows, row) - 1
        if k < 0:
            return None
        return self._anchor_us[k] + int(round((row - self._anchor_rows[k]) * 1e6 / self.fs))

    def retry_after(self, w: Window, stream_index: int) -> None:
        """Window `w` was unusable because of what happened up to `stream_index` (e.g. the last lead-off
        sample): start the next window right after it instead of a full stride later, so the first clean
        10 s are analysed as soon as they exist (electrodes attached, or re-attached after a pull)."""
        if w.start_index < self.seg_start:
            return
        ratio = self.fs / FS_HZ
        cand = int(np.ceil((stream_index + 1 - self.seg_start) / ratio))
        cur_start = int(round((w.start_index - self.seg_start) / ratio))
        if cur_start < cand < self.next_start_100:
            self.next_start_100 = cand

    def flush(self) -> list[Window]:
        """End of a finite stream (a replayed record): let the resampler finish its last outputs, as the
        offline resampler does, and return the windows that completes."""
        self._feed_resampler(force=True)
        self._append_resampled(self.resampler.flush() if hasattr(self.resampler, "flush") else None)
        return self._emit()

    def _emit(self) -> list[Window]:
        out = []
        ratio = self.fs / FS_HZ
        while True:
            s100 = self.next_start_100
            if self.model.count < s100 + N_SAMPLES:
                break
            ns = int(round(s100 * ratio))
            ne = ns + self.n_native
            if self.native.count < ne:
                break
            try:
                window = Window(start_index=self.seg_start + ns, end_index=self.seg_start + ne, fs=self.fs,
                                native_uv=self.native.get(ns, ne), lead_off=self.lead_off.get(ns, ne),
                                model_uv=self.model.get(s100, s100 + N_SAMPLES), gap_before=self.pending_gap,
                                events=self.pending_events, device_time_us=self.device_time_us(ns))
            except IndexError:
                # We fell behind by more than the ring holds (cannot happen at real time); skip ahead.
                log.warning("window at %d no longer buffered; skipping ahead", s100)
                self.next_start_100 = max(s100 + int(round(self.stride_s * FS_HZ)),
                                          self.model.count - N_SAMPLES)
                continue
            self.pending_gap = False
            self.pending_events = ()
            out.append(window)
            self.next_start_100 = s100 + int(round(self.stride_s * FS_HZ))
        return out
