"""Beat-detection scoring as in the standard evaluation (ANSI/AAMI EC57, WFDB `bxb`-style).

Kept next to the detector so tests, docs and the benchmark score the same way:
- reference beats are the annotations whose symbol is a *beat* label (BEAT_SYMBOLS);
- a detection matches a reference beat within +/-150 ms, each used at most once;
- beats and detections in the first/last `edge_s` seconds are left out (the detector has no
  context there and the reference may cut a beat in half).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Beat annotation symbols (PhysioNet annotation codes that mark a QRS complex).
BEAT_SYMBOLS = frozenset("N L R B A a J S V r F e j n E / f Q ?".split())
MATCH_S = 0.150


@dataclass
class BeatScore:
    record: str
    n_ref: int
    tp: int
    fn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    @property
    def ppv(self) -> float:
        return self.tp / max(1, self.tp + self.fp)


def match_beats(ref: np.ndarray, det: np.ndarray, fs: float, match_s: float = MATCH_S) -> tuple[int, int, int]:
    """Greedy nearest matching in time order -> (tp, fn, fp). Both inputs sorted sample indices."""
    ref = np.sort(np.asarray(ref, dtype=np.int64))
    det = np.sort(np.asarray(det, dtype=np.int64))
    tol = match_s * fs
    if ref.size == 0 or det.size == 0:
        return 0, int(ref.size), int(det.size)
    # For each reference beat, the nearest detection; then resolve double use (vectorised).
    pos = np.searchsorted(det, ref)
    left = np.clip(pos - 1, 0, det.size - 1)
    right = np.clip(pos, 0, det.size - 1)
    dl = np.abs(ref - det[left])
    dr = np.abs(det[right] - ref)
    nearest = np.where(dl <= dr, left, right)
    dist = np.minimum(dl, dr)
    ok = dist <= tol
    # A detection can match only one reference beat: keep the closest reference for each.
    cand_ref = np.nonzero(ok)[0]
    cand_det = nearest[ok]
    order = np.lexsort((dist[ok], cand_det))
    cd = cand_det[order]
    first = np.r_[True, cd[1:] != cd[:-1]]
    tp = int(first.sum())
    return tp, int(ref.size - tp), int(det.size - tp)


def score_record(name: str, ref_samples: np.ndarray, ref_symbols, det: np.ndarray, fs: float,
                 n_samples: int, edge_s: float = 1.0) -> BeatScore:
    sym = np.asarray(list(ref_symbols))
    ref = np.asarray(ref_samples, dtype=np.int64)[np.isin(sym, list(BEAT_SYMBOLS))]
    lo, hi = edge_s * fs, n_samples - edge_s * fs
    ref = ref[(ref >= lo) & (ref < hi)]
    det = np.asarray(det, dtype=np.int64)
    det = det[(det >= lo) & (det < hi)]
    tp, fn, fp = match_beats(ref, det, fs)
    return BeatScore(name, int(ref.size), tp, fn, fp)
