"""PNG of a triage result: the 12-lead strip (standard 3x4 + lead II rhythm, 25 mm/s, 10 mm/mV on ECG
paper) with the explanation overlay (Grad-CAM band / finding seconds shaded, driving leads boxed) and
the "triage aid, not a diagnosis" notice.

Why a small pure-numpy rasteriser and a zlib PNG writer instead of matplotlib: matplotlib is not a
device dependency (the Pi/Jetson image carries numpy + LiteRT only) and takes seconds to import on a
slow CPU. Waveforms are drawn as per-pixel-column vertical spans (x is monotonic in time), which is
exact for a trace and fully vectorised. Text uses an embedded 9x17 bitmap font (DejaVu Sans Mono
Bold 14 px, rasterised once at build time; DejaVu fonts are free to embed).
"""
from __future__ import annotations

import base64
import struct
import zlib
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import numpy as np

from firmware_bridge.samples import LEADS

LAYOUT = ((0, 3, 6, 9), (1, 4, 7, 10), (2, 5, 8, 11))   # I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6
RHYTHM = 1                                               # lead II
MM_PER_S, MM_PER_MV, ROW_MM, COL_S = 25.0, 10.0, 25.0, 2.5
NOTICE = "TRIAGE AID, NOT A DIAGNOSIS - confirm every finding with a clinician"

PAPER = (255, 255, 255)
GRID_FINE = (250, 214, 214)
GRID_BOLD = (236, 150, 150)
TRACE = (0, 0, 0)
HILITE = (230, 120, 0)
TEXT = (20, 20, 20)
PRIO_COLOURS = {"high": (200, 20, 20), "medium": (200, 150, 0), "tech": (0, 130, 150), "low": (40, 130, 60)}

GLYPH_W, GLYPH_H = 9, 17
_FONT_B64 = (
    "eNp1VMFL22AUb0xpHMREdhhxhsYNNjymZHMtZnZjsNP+gB3bFVIPHYsIowfRFEUv2dyxbvU/2EF38DgiStygVHarOLaI03PESwdF"
    "9r4kL18U99FD++v73vd7v/d7L5W67jCWU1IlPkO+IKQ2X9y/ElZ7cLP4bmn1vLzxIULGhqce3hYbnjn+U08PhJhZmxBK2w355g3W"
    "isKyfIZlt08+7murmD/D0rfCwzKNiAabckphECFGABKM0U/H6/q9gcvM4Fbx95EVXUseSDh4qVTPv0YAUjseyDKmDkuDfBqIBIdb"
    "qeRav95oa+93kAS745l5WeDYxk4PMx9BFo6F00Ao5dsZloNqclIdITkrDtlupZd4cl6VxKWSKvPPswgJvM3tbELcpIiQAsRMNS/x"
    "QnyRW67kmnUj12wniMGvqrZq7Za9KwUyl/UhOgM1dZhqs7i/zDp6JhGk7Hsppn+R1GqQs3xZr4/FgJgGYqYqpVAvYOHeHX289WN6"
    "6+AP05wLkzuePz2hKbYxIWHUWbNjFEdsQyvEitWhRtJxy9ER6hma1Da0kWZ7DqEFiOGOSUFF9FixCbfOAgdReYjLOpWcHcvDn84W"
    "WhdVba19amKUF7mOWURrMH7w23JemTFkt2t6Vlw+zrVczI8WcLwFhKqT6/snXw745Wd3kFiu1alqB5+Jf5CFyLuzI9BcbW0Fo0SC"
    "dObVhC2glS0XGtw+LftSOoSOSHOVIbdSsGOP7ZbyCuuYBeqxi4h+QguSBzS0XUNBaAYyV9QulMXFc/SyNnFY+7owuW4jV9kob/h5"
    "OTtkd1Q0p1bozulCcoTZniwLgsCBGn1UJ1KV0JAjzCkN8wOM9USVwCtB6fWYKZ9Bq/Oi4Kqp/x8WnpDS7LX/9WxOgebO9Oia6b8N"
    "at/s0ajsSLBmvul0PBTSEAicolHQJu2v5cwo8VBmxG1clZTNeYF0eG0PCvbDXOxZNxQ7mjewCONfWRcwi7R2WQ8WoOVUHyniCoyw"
    "i9uKaijSJ4ufXm8dko9Fue5FHaZQ6J+Ex8jEdUmRnb1j2rpeSLXs06rmC9Gr9Ek9J8OeT+wxVSpGxLI0KtKQegyaaVzxGEC3Rmtb"
    "SY8BsXy3LgvQd5NuI7tjjIorMF0lFdF+hgOLLcYL1gx6IYQicrjwE5YKTOIFiGOaSZORR7/30Zipf5HbYx8="
)


@lru_cache(maxsize=1)
def _font() -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(_FONT_B64)), np.uint8))
    return bits[:95 * GLYPH_H * GLYPH_W].reshape(95, GLYPH_H, GLYPH_W).astype(bool)


class Canvas:
    """An RGB uint8 image with the few primitives a strip needs."""

    def __init__(self, width: int, height: int, bg: tuple[int, int, int] = PAPER):
        self.w, self.h = int(width), int(height)
        self.px = np.empty((self.h, self.w, 3), np.uint8)
        self.px[:] = bg

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: tuple[int, int, int],
             alpha: float = 1.0) -> None:
        xa, xb = max(0, int(round(x0))), min(self.w, int(round(x1)))
        ya, yb = max(0, int(round(y0))), min(self.h, int(round(y1)))
        if xa >= xb or ya >= yb:
            return
        if alpha >= 1.0:
            self.px[ya:yb, xa:xb] = colour
        else:
            reg = self.px[ya:yb, xa:xb].astype(np.float32)
            self.px[ya:yb, xa:xb] = (reg * (1 - alpha) + np.array(colour, np.float32) * alpha).astype(np.uint8)

    def frame(self, x0: float, y0: float, x1: float, y1: float, colour: tuple[int, int, int], t: int = 2) -> None:
        self.rect(x0, y0, x1, y0 + t, colour)
        self.rect(x0, y1 - t, x1, y1, colour)
        self.rect(x0, y0, x0 + t, y1, colour)
        self.rect(x1 - t, y0, x1, y1, colour)

    def text(self, x: float, y: float, s: str, colour: tuple[int, int, int] = TEXT, scale: int = 1) -> float:
        """Draw ASCII text with its top-left at (x, y); returns the x after the last glyph."""
        font = _font()
        x, y = int(round(x)), int(round(y))
        for ch in s:
            code = ord(ch) - 32
            if not 0 <= code < 95:
                code = ord("?") - 32
            g = font[code]
            if scale > 1:
                g = np.repeat(np.repeat(g, scale, 0), scale, 1)
            gh, gw = g.shape
            xa, ya = max(0, x), max(0, y)
            xb, yb = min(self.w, x + gw), min(self.h, y + gh)
            if xa < xb and ya < yb:
                sub = g[ya - y:yb - y, xa - x:xb - x]
                self.px[ya:yb, xa:xb][sub] = colour
            x += gw
        return x

    def trace(self, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int], clip_y: tuple[float, float],
              thick: int = 1) -> None:
        """A polyline with monotonic x drawn as one vertical span per pixel column (NaN breaks it)."""
        ok = np.isfinite(ys) & np.isfinite(xs)
        if ok.sum() < 2:
            return
        # Split at NaN runs so gaps are not bridged.
        idx = np.flatnonzero(ok)
        breaks = np.flatnonzero(np.diff(idx) > 1) + 1
        for run in np.split(idx, breaks):
            if run.size >= 2:
                self._span_run(xs[run], ys[run], colour, clip_y, thick)

    def _span_run(self, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int],
                  clip_y: tuple[float, float], thick: int) -> None:
        cols = np.floor(xs).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        ucol = cols[starts]
        lo = np.minimum.reduceat(ys, starts)
        hi = np.maximum.reduceat(ys, starts)
        # connect each column to the last sample of the previous one (continuous line)
        last = np.r_[starts[1:] - 1, ys.size - 1]
        prev_last = np.r_[ys[0], ys[last[:-1]]]
        lo = np.minimum(lo, prev_last)
        hi = np.maximum(hi, prev_last)
        # fill any skipped columns (x step > 1 px) by linear continuation
        if ucol.size > 1 and np.any(np.diff(ucol) > 1):
            full = np.arange(ucol[0], ucol[-1] + 1)
            lo = np.interp(full, ucol, lo)
            hi = np.interp(full, ucol, hi)
            ucol = full
        keep = (ucol >= 0) & (ucol < self.w)
        ucol, lo, hi = ucol[keep], lo[keep], hi[keep]
        if not ucol.size:
            return
        y_top = max(0, int(np.floor(clip_y[0])))
        y_bot = min(self.h, int(np.ceil(clip_y[1])))
        if y_top >= y_bot:
            return
        rows = np.arange(y_top, y_bot)[:, None]
        half = thick / 2.0
        mask = (rows >= np.floor(lo - half)[None, :]) & (rows <= np.ceil(hi + half - 1)[None, :])
        c0, c1 = int(ucol[0]), int(ucol[-1]) + 1
        region = self.px[y_top:y_bot, c0:c1]
        sub = np.zeros((y_bot - y_top, c1 - c0), bool)
        sub[:, ucol - c0] = mask
        for t in range(1, max(1, thick)):          # widen horizontally for thick lines
            sub[:, t:] |= sub[:, :-t].copy()
        region[sub] = colour


def _priority(result: dict[str, Any]) -> tuple[str, str]:
    level = str(result.get("triage_level") or (result.get("triage") or {}).get("level") or "").lower()
    if level == "cannot_interpret" or (result.get("quality") or {}).get("verdict") == "unusable":
        return "tech", "CANNOT INTERPRET"
    findings = ((result.get("explanation") or {}).get("findings")) or []
    classes = [str(f.get("cls") or f.get("class")) for f in findings if isinstance(f, dict)]
    if level == "high":
        return "high", "SUSPECTED MI" if ("MI" in classes or not classes) else "HIGH PRIORITY"
    if level == "medium":
        abn = [c for c in classes if c not in ("MI", "NORM")]
        return "medium", ("ABNORMAL ECG: " + ", ".join(abn)) if abn else "ABNORMAL ECG"
    return "low", "NO URGENT FINDING"


def _explanation(result: dict[str, Any]) -> tuple[str | None, list[str], list[list[float]], list[float] | None]:
    e = result.get("explanation") or {}
    findings = e.get("findings") if isinstance(e.get("findings"), list) else []
    f = findings[0] if findings else e
    cls = f.get("cls") or f.get("class") or e.get("class")
    leads = [str(x) for x in (f.get("leads") or []) if str(x) in LEADS]
    secs = f.get("seconds") or e.get("seconds") or []
    if len(secs) == 2 and all(isinstance(v, (int, float)) for v in secs):
        secs = [secs]
    secs = [list(map(float, s[:2])) for s in secs if isinstance(s, (list, tuple)) and len(s) >= 2]
    cam = f.get("cam")
    if cam is None and isinstance(e.get("cam"), dict):
        cam = e["cam"].get(cls)
    elif cam is None and isinstance(e.get("cam"), list):
        cam = e["cam"]
    return cls, leads, secs, (list(map(float, cam)) if isinstance(cam, (list, tuple)) and cam else None)


def _fmt_time(t: Any) -> str:
    if isinstance(t, (int, float)):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(t or "")


def render_result_rgb(result: dict[str, Any], fs: float, strip_uv: np.ndarray, width: int = 1600) -> np.ndarray:
    """(H, W, 3) uint8 image of the result. `strip_uv` is (n, 12) microvolts in LEADS order at `fs`."""
    x = np.asarray(strip_uv, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 12 or x.shape[0] < 2:
        raise ValueError(f"strip must be (n >= 2, 12) microvolts in LEADS order, got {x.shape}")
    fs = float(fs)
    dur = x.shape[0] / fs
    width = int(width)
    margin = max(10, width // 80)
    mm = (width - 2 * margin) / (dur * MM_PER_S)           # pixels per mm
    row_h = ROW_MM * mm
    scale = 2 if width >= 2000 else 1
    line_h = GLYPH_H * scale + 4
    big = 2 if scale == 1 else scale
    header_h = margin // 2 + 6 + GLYPH_H * big + 6 + 4 * line_h + margin // 2
    grid_h = int(round(4 * row_h))
    footer_h = line_h + margin
    H = header_h + grid_h + footer_h
    cv = Canvas(width, H)
    gx0, gy0 = margin, header_h
    gx1 = gx0 + dur * MM_PER_S * mm
    pxps = MM_PER_S * mm
    px_per_uv = MM_PER_MV * mm / 1000.0

    # ---- header text
    prio, label = _priority(result)
    cls, leads, secs, cam = _explanation(result)
    cv.rect(0, 0, width, 5, PRIO_COLOURS[prio])
    y = margin // 2 + 6
    xe = cv.text(margin, y, label, PRIO_COLOURS[prio], scale=scale * 2 if scale == 1 else scale)
    cv.text(xe + 16, y + 8 * (2 if scale == 1 else 1), f"  {_fmt_time(result.get('time'))}   id {result.get('id', '')}",
            TEXT, scale)
    y += GLYPH_H * (2 if scale == 1 else scale) + 6
    probs = result.get("probabilities") or {}
    ptxt = "  ".join(f"{k} {100 * float(v):.0f}%" for k, v in probs.items() if isinstance(v, (int, float)))
    cv.text(margin, y, "Probabilities: " + (ptxt or "none (not interpreted)"), TEXT, scale)
    y += line_h
    q = result.get("quality") or {}
    hr = result.get("heart_rate_bpm", result.get("heart_rate"))
    pat = result.get("patient") or {}
    cv.text(margin, y, f"HR {hr:.0f} bpm" if isinstance(hr, (int, float)) else "HR --", TEXT, scale)
    cv.text(margin + 16 * GLYPH_W * scale, y,
            f"Quality {q.get('verdict', '?')}" + (f" ({'; '.join(map(str, q.get('reasons') or []))})"
                                                 if q.get("reasons") else "")
            + (f"  electrodes off: {', '.join(q.get('electrodes_off') or [])}" if q.get("electrodes_off") else "")
            + f"   Patient age {pat.get('age', 'unknown')}, sex {pat.get('sex', 'unknown')}", TEXT, scale)
    y += line_h
    if cls and (leads or secs or cam):
        etxt = f"Explanation ({cls}): leads " + (", ".join(leads) or "-") + "; " + \
            (", ".join(f"{a:.1f}-{b:.1f} s" for a, b in secs) or "-")
        cv.text(margin, y, etxt, HILITE, scale)
    y += line_h
    cv.text(margin, y, NOTICE, (160, 0, 0), scale)

    # ---- ECG paper
    cv.rect(gx0, gy0, gx1, gy0 + grid_h, PAPER)
    if mm >= 3:
        for k in range(int(dur * MM_PER_S) + 1):
            cv.rect(gx0 + k * mm, gy0, gx0 + k * mm + 1, gy0 + grid_h, GRID_FINE)
        for k in range(int(4 * ROW_MM) + 1):
            cv.rect(gx0, gy0 + k * mm, gx1, gy0 + k * mm + 1, GRID_FINE)
    for k in range(0, int(dur * MM_PER_S) + 1, 5):
        cv.rect(gx0 + k * mm, gy0, gx0 + k * mm + 1, gy0 + grid_h, GRID_BOLD)
    for k in range(0, int(4 * ROW_MM) + 1, 5):
        cv.rect(gx0, gy0 + k * mm, gx1, gy0 + k * mm + 1, GRID_BOLD)

    # ---- explanation: CAM band (or the finding's seconds) shaded over every row, driving leads boxed
    if cam:
        c = np.asarray(cam, np.float64)
        mx = float(np.nanmax(c)) if c.size else 0.0
        if mx > 0:
            dt = dur / c.size
            for i, v in enumerate(c):
                a = max(0.0, float(v) / mx)
                if a >= 0.15:
                    cv.rect(gx0 + i * dt * pxps, gy0, gx0 + (i + 1) * dt * pxps + 1, gy0 + grid_h, (255, 150, 40),
                            0.35 * a)
    for a, b in secs:
        if not cam:
            cv.rect(gx0 + a * pxps, gy0, gx0 + b * pxps, gy0 + grid_h, (255, 150, 40), 0.28)
        cv.rect(gx0 + a * pxps, gy0, gx0 + a * pxps + 2, gy0 + grid_h, HILITE)
        cv.rect(gx0 + b * pxps - 2, gy0, gx0 + b * pxps, gy0 + grid_h, HILITE)
    col_w = COL_S * pxps
    for r in range(3):
        for c in range(4):
            if LEADS[LAYOUT[r][c]] in leads:
                cv.frame(gx0 + c * col_w + 2, gy0 + r * row_h + 2, gx0 + (c + 1) * col_w - 2,
                         gy0 + (r + 1) * row_h - 2, HILITE, 3)
    if LEADS[RHYTHM] in leads:
        cv.frame(gx0 + 2, gy0 + 3 * row_h + 2, gx1 - 2, gy0 + 4 * row_h - 2, HILITE, 3)

    # ---- traces
    t = np.arange(x.shape[0]) / fs
    col_n = int(round(COL_S * fs))
    thick = max(1, int(round(mm * 0.3)))
    off = set(q.get("electrodes_off") or [])
    for r in range(3):
        base = gy0 + r * row_h + 0.55 * row_h
        clip = (gy0 + (r - 0.4) * row_h, gy0 + (r + 1.4) * row_h)
        for c in range(4):
            lead = LAYOUT[r][c]
            sl = slice(c * col_n, min(x.shape[0], (c + 1) * col_n))
            cv.trace(gx0 + t[sl] * pxps, base - x[sl, lead] * px_per_uv, TRACE, clip, thick)
            name = LEADS[lead]
            colour = HILITE if name in leads else TEXT
            cv.text(gx0 + c * col_w + 5, gy0 + r * row_h + 4, name, colour, scale)
            if c:
                cv.rect(gx0 + c * col_w, base - 0.25 * row_h, gx0 + c * col_w + 2, base + 0.1 * row_h, TEXT)
    base = gy0 + 3.55 * row_h
    cv.trace(gx0 + t * pxps, base - x[:, RHYTHM] * px_per_uv, TRACE,
             (gy0 + 2.6 * row_h, gy0 + 4 * row_h), thick)
    cv.text(gx0 + 5, gy0 + 3 * row_h + 4, "II (rhythm)", HILITE if "II" in leads else TEXT, scale)
    # 1 mV calibration pulse
    cb = gy0 + 0.55 * row_h
    cv.rect(gx1 - 6 * mm, cb - 1000 * px_per_uv, gx1 - 6 * mm + 2, cb, TEXT)
    cv.rect(gx1 - 6 * mm, cb - 1000 * px_per_uv, gx1 - 4 * mm, cb - 1000 * px_per_uv + 2, TEXT)
    cv.rect(gx1 - 4 * mm - 2, cb - 1000 * px_per_uv, gx1 - 4 * mm, cb, TEXT)

    # ---- footer
    model = result.get("model") or {}
    mv = model.get("version") if isinstance(model, dict) else model
    cv.text(margin, gy0 + grid_h + 6,
            f"25 mm/s  10 mm/mV  {fs:g} Hz  {dur:.1f} s   model {mv or result.get('model_version', '?')}   "
            f"{result.get('notice', 'Triage aid, not a diagnosis')}", TEXT, scale)
    return cv.px


def encode_png(rgb: np.ndarray, level: int = 6) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (8-bit truecolour, filter 'none' per row: zlib does the work)."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need (H, W, 3) uint8, got {a.shape}")
    h, w, _ = a.shape
    raw = np.empty((h, 1 + 3 * w), np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = a.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00Triage aid, not a diagnosis")
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def render_result_png(result: dict[str, Any], fs: float, strip_uv: np.ndarray, width: int = 1600) -> bytes:
    """PNG bytes of a result's strip with the explanation overlay (used by /api/results/<id>.png)."""
    return encode_png(render_result_rgb(result, fs, strip_uv, width))


__all__ = ["render_result_png", "render_result_rgb", "encode_png", "Canvas"]
