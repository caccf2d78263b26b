"""Where each DATA frame goes in the sample stream: gaps, duplicates, resets, implausible jumps.

Why a module of its own: the 32-bit sequence counter is the only thing that sizes a gap, and a frame
passes the CRC-32 whether its counter is sensible or not (a firmware bug, a glitch the CRC happens to
miss, or a hostile device). Trusting it blindly let one frame with the counter jumped by 2^31 report a
gap of 21 billion samples and shift the stream index for good. So the rules are:

- the first frame after a (re)start is the baseline (gap -1 if the driver has events to report);
- a frame whose (seq, timestamp) was already seen among the last RECENT frames is a duplicate: dropped;
- a frame whose sample count differs from the count the device announced is refused (dropped, counted,
  logged with the reason): a frame size only changes with a new DEVICE_INFO, which restarts the stream;
- a frame going backwards (seq or device timestamp) or jumping further than max_gap_frames is
  *implausible*. It is held, not believed: if the very next frame continues it (seq + 1, same or
  later timestamp), the stream really restarted -> both are delivered with gap -1 and the event
  "device_reset" (backwards) or "sequence_jump" (forward); if the next frame continues the old
  stream instead, the lone frame is dropped and its slot is reported as an ordinary lost frame.

So a gap reported from the counter is never larger than max_gap_frames, and one bad frame never
moves the stream index: the worst it does is cost its own slot.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from . import protocol as P

log = logging.getLogger(__name__)

SEQ_MASK = 0xFFFFFFFF
RECENT = 64          # frames remembered for duplicate detection (about 1.3 s at 50 frames/s)


@dataclass(frozen=True)
class Placement:
    """One frame to deliver: gap_before in samples (-1 = unknown) and the events that explain it."""
    frame: P.DataFrame
    gap: int
    events: tuple[str, ...]


class FrameSequencer:
    """Places DATA frames of one stream. counters: an object with the DriverStats counter fields."""

    def __init__(self, counters: Any, max_gap_frames: int) -> None:
        self.counters = counters
        self.max_gap_frames = max(1, int(max_gap_frames))
        self.pending_events: list[str] = []
        self.last_refusal: str | None = None
        self.restart()

    def restart(self) -> None:
        """A new stream starts (handshake, reconnect): the next frame is the baseline."""
        self._expect: int | None = None
        self._last_ts: int | None = None
        self._held: tuple[P.DataFrame, str] | None = None
        self._recent: deque[tuple[int, int]] = deque(maxlen=RECENT)

    def _refuse(self, why: str) -> None:
        self.counters.frames_refused += 1
        if why != self.last_refusal:
            log.warning("front end frame refused: %s", why)
        self.last_refusal = why

    def _accept(self, f: P.DataFrame) -> None:
        self._expect = (f.seq + 1) & SEQ_MASK
        self._last_ts = f.timestamp_us
        self._recent.append((f.seq, f.timestamp_us))

    def place(self, f: P.DataFrame, samples_per_frame: int) -> list[Placement]:
        """The frames to deliver now (possibly none, possibly a held frame plus this one)."""
        if f.n != samples_per_frame:
            self._refuse(f"DATA frame seq {f.seq} carries {f.n} samples; the device announced "
                         f"{samples_per_frame} per frame (a size change needs a new DEVICE_INFO)")
            return []
        if self._expect is None:
            events = tuple(dict.fromkeys(self.pending_events))
            self.pending_events.clear()
            self._accept(f)
            return [Placement(f, -1 if events else 0, events)]
        if (f.seq, f.timestamp_us) in self._recent:
            self.counters.duplicates += 1
            return []
        delta = (f.seq - self._expect) & SEQ_MASK
        reason = None
        if delta >= 1 << 31 or (self._last_ts is not None and f.timestamp_us < self._last_ts):
            reason = "device_reset"
        elif delta > self.max_gap_frames:
            reason = "sequence_jump"
        if self._held is not None:
            held, held_reason = self._held
            self._held = None
            if f.seq == (held.seq + 1) & SEQ_MASK and f.timestamp_us >= held.timestamp_us:
                self.counters.resyncs += 1
                if held_reason == "device_reset":
                    self.counters.device_resets += 1
                log.warning("front end stream restarted (%s): seq %d -> %d confirmed by the next frame; "
                            "gap unknown", held_reason, (self._expect - 1) & SEQ_MASK, held.seq)
                self._recent.clear()
                self._accept(held)
                self._accept(f)
                return [Placement(held, -1, (held_reason,)), Placement(f, 0, ())]
            self._refuse(f"lone DATA frame with seq {held.seq} ({held_reason}; expected about "
                         f"{(self._expect) & SEQ_MASK}) not continued by the next frame: dropped")
        if reason is not None:
            self._held = (f, reason)
            return []
        gap = delta * f.n
        if delta:
            self.counters.frames_lost += delta
            self.counters.samples_lost += gap
        self._accept(f)
        return [Placement(f, gap, ())]
