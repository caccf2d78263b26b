"""What the driver hands to the host: blocks of 12-lead samples in microvolts.

An ADS1298-class front end measures 8 channels (I, II, V1..V6). The four other limb leads are
derived on the host (Einthoven: III = II - I; Goldberger: aVR = -(I+II)/2, aVL = I - II/2,
aVF = II - I/2), exactly as PTB-XL's own stored limb leads are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .leads import CHANNELS, ELECTRODES, LEADS  # noqa: F401 - re-exported: what the driver hands up


def derive_leads(channels: np.ndarray) -> np.ndarray:
    """(n, 8) measured channels -> (n, 12) leads in LEADS order, same units and dtype float64."""
    ch = np.asarray(channels, dtype=np.float64)
    i, ii = ch[:, 0], ch[:, 1]
    out = np.empty((ch.shape[0], 12), dtype=np.float64)
    out[:, 0] = i
    out[:, 1] = ii
    out[:, 2] = ii - i
    out[:, 3] = -(i + ii) / 2.0
    out[:, 4] = i - ii / 2.0
    out[:, 5] = ii - i / 2.0
    out[:, 6:12] = ch[:, 2:8]
    return out


@dataclass(frozen=True)
class SampleBlock:
    """A run of consecutive samples from the front end.

    first_index counts samples since the driver's stream started (it keeps counting across device
    resets and reconnects, so indices are monotonic and gaps are visible as jumps).
    gap_before is the number of samples known to be missing immediately before this block
    (0 when contiguous); a gap of unknown size (device reset, reconnect) is reported as -1 and the
    driver then restarts first_index after the last index it yielded + 1.
    """
    first_index: int
    fs: int
    leads_uv: np.ndarray            # (n, 12) float64, LEADS order, microvolts
    lead_off: np.ndarray            # (n, 9) bool, ELECTRODES order, True = electrode off
    gap_before: int = 0
    device_time_us: int | None = None   # device timestamp of the first sample, if known
    events: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("reconnected", "device_reset")

    @property
    def n(self) -> int:
        return int(self.leads_uv.shape[0])
