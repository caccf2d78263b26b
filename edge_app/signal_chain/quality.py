"""Signal quality gate: may this 10 s, 12-lead window be interpreted at all?

Why this design:
- A guess on noise is the worst failure of an ambulance triage aid. The gate says "unusable"
  (the crew sees "cannot interpret" and the reasons) when any electrode is off or any lead is
  unusable. POLICY: a 12-lead interpretation with a missing or unusable lead is not given: the
  model was trained on complete 12-lead records and a missing lead can hide exactly the ST
  change that matters (e.g. V2-V4 in anterior MI).
- Built on published signal-quality indices, computed per lead at the window's native rate:
  kSQI (kurtosis; clean ECG is peaky, > 5), pSQI (power 5-15 Hz / 5-40 Hz; QRS energy vs
  noise), basSQI (1 - power 0-1 Hz / 0-40 Hz; baseline wander) as in Li, Mark & Clifford (2008),
  Clifford et al. (2012), Zhao & Zhang (2018) and NeuroKit2's `ecg_quality`. The 5-40 Hz bands
  exist at 100 Hz too, so the same indices work on PTB-XL (100 Hz) and on the device (500 Hz).
  Higher bands (> 50 Hz) are not used: the model never sees them (the resampler removes them).
- Plus direct physical checks a front end needs: electrode off (the front end's lead-off flags,
  and from the signal: railed / huge DC offset), flat line, saturation at the ADC rail and
  clipping plateaus, broadband noise level in microvolts in the band the model sees (20-45 Hz),
  large baseline excursions, implausible amplitude.
- Reasons are short sentences a crew understands ("V3 electrode off", "limb leads noisy").
- Thresholds were chosen on PTB-XL train records (fold 1-8) and checked on val (fold 9); see
  docs/signal_chain.md for the confusion table.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .contract import LEADS
from .quality_features import NOISE_PERCENTILE, RAIL_UV, lead_features  # noqa: F401 - re-exported

#: Electrodes (front end's flag order), limb/chest leads and the leads each electrode disturbs (a limb
#: electrode disturbs every chest lead too: Wilson's central terminal): defined once in firmware_bridge.leads.
from firmware_bridge.leads import CHEST_LEADS, ELECTRODE_LEADS, ELECTRODES, LIMB_LEADS  # noqa: E402,F401

# --- thresholds (microvolts unless stated) -----------------------------------------------------
#: ADS1298 at gain 6 and 2.4 V reference: input range +/-400 mV (RAIL_UV, defined with the features).
#: A DC offset this large means a floating / off electrode (Ag/AgCl offsets are tens of mV).
DC_OFF_UV = 150_000.0
#: Lead-off comparator flags: an electrode counts as off when flagged in more than this fraction.
LEAD_OFF_FRACTION = 0.01
#: Flat line: robust peak-to-peak of the 0.5-40 Hz signal below this.
FLAT_UV = 30.0
#: Implausible: robust peak-to-peak of the 0.5-40 Hz signal above this (no real ECG lead is that big).
AMP_MAX_UV = 15_000.0
#: Clipping plateau: more than this fraction of samples pinned at the window's extreme value.
CLIP_FRACTION = 0.015
#: Broadband noise in 20-45 Hz (lower-quartile RMS of 100 ms segments, NOISE_PERCENTILE, so QRS complexes
#: are ignored), in microvolts:
NOISE_ACCEPTABLE_UV = 12.0
NOISE_UNUSABLE_UV = 25.0
#: ... and relative to the lead's own QRS size (a small lead drowns in less noise).
SNR_UNUSABLE = 4.0
#: Mains hum (sinusoid amplitude at 50/60 Hz, only measurable above 111 Hz sampling). The resampler
#: and the display notch remove hum, so moderate hum is only mentioned; mV-level hum means an
#: electrode is loose or floating (its impedance turns the body's mains pick-up into signal).
HUM_ACCEPTABLE_UV = 200.0
HUM_UNUSABLE_UV = 2_000.0
#: Published SQI limits (Zhao & Zhang 2018 / NeuroKit2): kSQI > 5 is "optimal".
KSQI_MIN = 5.0
#: pSQI below this: energy spread up to 40 Hz (muscle noise), not concentrated in the QRS band.
PSQI_MIN = 0.3
#: basSQI below this: much power under 1 Hz. Only a *minor* flag: on real PTB-XL records the heart
#: rate's own fundamental (~1 Hz) and broad T waves push basSQI of clean leads down to ~0.5 (median
#: of the worst lead per record 0.68 on train), so the fatal wander test is the excursion in uV.
BASSQI_ACCEPTABLE = 0.3
#: Baseline excursion (peak-to-peak of the < 0.7 Hz component) above which wander is mentioned / fatal.
WANDER_ACCEPTABLE_UV = 1_500.0
WANDER_UNUSABLE_UV = 8_000.0

VERDICTS = ("good", "acceptable", "unusable")


class QualityError(ValueError):
    """Input the quality gate cannot assess (shape, rate, leads, flags)."""


@dataclass
class LeadQuality:
    verdict: str
    flags: list[str]
    ksqi: float
    psqi: float
    bassqi: float
    noise_uv: float
    amplitude_uv: float
    dc_uv: float
    wander_uv: float
    clip_fraction: float
    hum_uv: float = 0.0


@dataclass
class QualityReport:
    """Window-level verdict with reasons in words a crew understands. A triage aid, not a diagnosis."""
    verdict: str                                   # 'good' | 'acceptable' | 'unusable'
    reasons: list[str] = field(default_factory=list)
    leads: dict[str, LeadQuality] = field(default_factory=dict)
    electrodes_off: list[str] = field(default_factory=list)
    fs: float = 0.0

    @property
    def usable(self) -> bool:
        return self.verdict != "unusable"

    def usable_leads(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        names = names or tuple(self.leads)
        return np.array([self.leads[n].verdict != "unusable" for n in names], dtype=bool)

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


def _lead_verdicts(ft: dict[str, np.ndarray]) -> tuple[list[list[str]], list[list[str]]]:
    """-> (fatal flags, minor flags) per lead."""
    L = ft["dc"].size
    fatal: list[list[str]] = [[] for _ in range(L)]
    minor: list[list[str]] = [[] for _ in range(L)]
    for i in range(L):                                   # loop over leads (12), not samples
        railed = ft["at_rail"][i] > 0.01 or abs(ft["dc"][i]) > DC_OFF_UV
        if railed:
            fatal[i].append("off")
            continue
        if ft["amp"][i] < FLAT_UV:
            fatal[i].append("flat")
            continue
        if ft["amp"][i] > AMP_MAX_UV:
            fatal[i].append("amplitude")
        if ft["clip"][i] > CLIP_FRACTION:
            fatal[i].append("clipped")
        noise = ft["noise"][i]
        snr = ft["amp"][i] / max(noise, 1e-9)
        if noise > NOISE_UNUSABLE_UV or (snr < SNR_UNUSABLE and noise > 0.5 * NOISE_ACCEPTABLE_UV):
            fatal[i].append("noisy")
        elif noise > NOISE_ACCEPTABLE_UV or ft["psqi"][i] < PSQI_MIN or ft["ksqi"][i] < KSQI_MIN:
            minor[i].append("some noise")
        if ft["hum"][i] > HUM_UNUSABLE_UV:
            fatal[i].append("hum")
        elif ft["hum"][i] > HUM_ACCEPTABLE_UV:
            minor[i].append("some hum")
        if ft["wander"][i] > WANDER_UNUSABLE_UV:
            fatal[i].append("wander")
        elif ft["wander"][i] > WANDER_ACCEPTABLE_UV or ft["bassqi"][i] < BASSQI_ACCEPTABLE:
            minor[i].append("some wander")
    return fatal, minor


_WORDS = {
    "flat": "flat line",
    "clipped": "clipped (signal cut off at its top or bottom)",
    "noisy": "too noisy",
    "some noise": "slightly noisy",
    "wander": "baseline wandering too much",
    "some wander": "baseline wandering",
    "amplitude": "implausible amplitude",
    "off": "signal at the amplifier's limit",
    "hum": "strong mains interference (electrode loose?)",
    "some hum": "mains interference",
}


def _group(names: list[str], present: tuple[str, ...]) -> str:
    """'limb leads' / 'chest leads' / 'all leads' / 'V2, V3' / 'lead II'."""
    s = set(names)
    limb = [n for n in LIMB_LEADS if n in present]
    chest = [n for n in CHEST_LEADS if n in present]
    if len(present) > 1 and s == set(present):
        return "all leads"
    parts = []
    rest = [n for n in present if n in s]
    if len(limb) >= 3 and set(limb) <= s:
        parts.append("limb leads")
        rest = [n for n in rest if n not in limb]
    if len(chest) >= 3 and set(chest) <= s:
        parts.append("chest leads")
        rest = [n for n in rest if n not in chest]
    if rest:
        word = "" if all(r in CHEST_LEADS for r in rest) else ("lead " if len(rest) == 1 else "leads ")
        parts.append(word + ", ".join(rest))
    return " and ".join(parts)


def _infer_off_electrodes(fatal: list[list[str]], names: tuple[str, ...], kind: str = "off") -> list[str]:
    """Which electrode is off, from the pattern of railed (kind 'off') or flat (kind 'flat') leads.

    RA feeds I and II but not III, LA feeds I and III, LL feeds II and III; a chest electrode feeds
    only its own lead. A front end that outputs a flat line for a lost electrode gives the same pattern.
    When every lead is flat, no electrode is named (the front end is not measuring at all)."""
    off_leads = {n for n, f in zip(names, fatal) if kind in f}
    if kind == "flat" and len(off_leads) == len(names):
        return []
    if not off_leads:
        return []
    out: list[str] = []
    have = set(names)
    if {"I", "II", "III"} <= have:
        i, ii, iii = ("I" in off_leads), ("II" in off_leads), ("III" in off_leads)
        if i and ii and not iii:
            out.append("RA")
        elif i and iii and not ii:
            out.append("LA")
        elif ii and iii and not i:
            out.append("LL")
        elif i and ii and iii:
            out.extend(["RA", "LA", "LL"])
        limb_off = bool(out)
    else:
        limb_off = False
    if not limb_off:
        out.extend(v for v in CHEST_LEADS if v in off_leads)
    return out


def _check_input(x: np.ndarray, fs: float, leads: tuple[str, ...] | list[str] | None) -> tuple[float, tuple[str, ...]]:
    """Validate one window's (n, L) shape and rate; -> (fs, lead names)."""
    if x.ndim != 2 or x.shape[1] == 0:
        raise QualityError(f"window must be (n, leads), got shape {x.shape}")
    fs = float(fs)
    if not np.isfinite(fs) or fs < 50:
        raise QualityError(f"sampling rate must be >= 50 Hz, got {fs}")
    if x.shape[0] < int(2 * fs):
        raise QualityError(f"need at least 2 s of signal to judge quality, got {x.shape[0] / fs:.2f} s")
    if leads is None:
        leads = LEADS if x.shape[1] == len(LEADS) else tuple(f"ch{i}" for i in range(x.shape[1]))
    names = tuple(leads)
    if len(names) != x.shape[1]:
        raise QualityError(f"{len(names)} lead names for {x.shape[1]} leads")
    return fs, names


def _check_lead_off(lead_off: np.ndarray | None, n: int) -> np.ndarray | None:
    if lead_off is None:
        return None
    lo = np.asarray(lead_off, dtype=bool)
    if lo.ndim != 2 or lo.shape[1] != len(ELECTRODES) or lo.shape[0] != n:
        raise QualityError(f"lead_off must be (n, {len(ELECTRODES)}) bool in order {', '.join(ELECTRODES)} "
                           f"with n = {n}, got {lo.shape}")
    return lo


def ecg_quality(window_uv: np.ndarray, fs: float, lead_off: np.ndarray | None = None,
                leads: tuple[str, ...] | list[str] | None = None, mains_hz: float | None = None,
                missing: np.ndarray | None = None) -> QualityReport:
    """Quality of one window (n, L) in microvolts at its native rate fs.

    leads: lead names (default: the 12 standard leads in PTB-XL order when L == 12; then the
    front end's lead_off flags (n, 9) in ELECTRODES order are honoured). With fewer leads, only the
    leads present are assessed (e.g. a 2-channel Holter record). mains_hz: the hum to ignore when
    measuring noise (50 or 60; None ignores both).

    Missing samples (NaN in the window, or `missing[i]` True: samples the analysis of this window depends
    on are missing just outside it, e.g. within the resampler's look-ahead) make that lead unusable with
    the reason "no signal (missing samples) on ...": a gap is never analysed as signal (issue 14 item 7).
    """
    x = np.asarray(window_uv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    _check_input(x, fs, leads)
    return ecg_quality_batch(x[None], fs, None if lead_off is None else np.asarray(lead_off)[None], leads,
                             mains_hz, None if missing is None else np.asarray(missing, dtype=bool)[None])[0]


def ecg_quality_batch(windows_uv: np.ndarray, fs: float, lead_off: np.ndarray | None = None,
                      leads: tuple[str, ...] | list[str] | None = None, mains_hz: float | None = None,
                      missing: np.ndarray | None = None) -> list[QualityReport]:
    """`ecg_quality` of many windows (W, n, L) at once (a replayed backlog): one pass of every filter over
    all W x L columns instead of W passes. Each report equals `ecg_quality` of that window alone (the
    figures are computed column by column; tested bit for bit). lead_off: (W, n, 9) or None; missing: (W, L)."""
    xs = np.asarray(windows_uv, dtype=np.float64)
    if xs.ndim != 3 or xs.shape[0] == 0:
        raise QualityError(f"windows must be (count, n, leads), got shape {xs.shape}")
    w_count, n, n_leads = xs.shape
    fs, names = _check_input(xs[0], fs, leads)
    los = [None] * w_count if lead_off is None else [_check_lead_off(lead_off[k], n) for k in range(w_count)]
    miss = np.zeros((w_count, n_leads), dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
    if miss.shape != (w_count, n_leads):
        raise QualityError(f"missing must be ({w_count}, {n_leads}) bool (one flag per lead), got {miss.shape}")
    nonfinite = ~np.all(np.isfinite(xs), axis=1) | miss                 # (W, L)
    cols = np.ascontiguousarray(xs.transpose(1, 0, 2)).reshape(n, w_count * n_leads)
    if nonfinite.any():
        cols = np.where(np.isfinite(cols), cols, 0.0)                    # placeholder; those leads are "missing"
    ft_all = lead_features(cols, fs, mains_hz)
    out = []
    for k in range(w_count):
        ft = {key: v[k * n_leads:(k + 1) * n_leads] for key, v in ft_all.items()}
        out.append(_report(ft, fs, names, los[k], nonfinite[k], n))
    return out


def _report(ft: dict[str, np.ndarray], fs: float, names: tuple[str, ...], lo: np.ndarray | None,
            nonfinite: np.ndarray, n: int) -> QualityReport:
    """Verdict, reasons and per-lead quality of one window from its features."""
    reasons: list[str] = []
    fatal, minor = _lead_verdicts(ft)
    for i in np.nonzero(nonfinite)[0]:
        fatal[i] = ["missing"]                            # placeholder-filled: its other flags mean nothing
        minor[i] = []
    # Electrodes off: the front end's flags first, then what the signal shows.
    off: list[str] = []
    if lo is not None:
        off = [e for e, fr in zip(ELECTRODES, lo.mean(axis=0)) if fr > LEAD_OFF_FRACTION]
    for e in _infer_off_electrodes(fatal, names):
        if e not in off:
            off.append(e)
    flat_off = [e for e in _infer_off_electrodes(fatal, names, "flat") if e not in off]
    off = [e for e in ELECTRODES if e in off or e in flat_off]
    affected = {ld for e in off for ld in ELECTRODE_LEADS[e]}
    limb_flat = [e for e in ("RA", "LA", "LL") if e in flat_off]
    for e in off:
        if e in flat_off:
            if len(limb_flat) > 1 and e in limb_flat:
                if e == limb_flat[0]:
                    reasons.append(f"flat line on limb leads (check {', '.join(limb_flat)} electrodes)")
                continue
            leads_txt = _group([ld for ld in ELECTRODE_LEADS[e] if ld in names and "flat" in fatal[names.index(ld)]], names)
            reasons.append(f"flat line on {leads_txt} (check {e} electrode)")
        else:
            reasons.append(f"{e} electrode off")
    if {"RA", "LA", "LL"} <= (set(off) - set(flat_off)):
        reasons[:] = ["limb electrodes off (RA, LA, LL)"] + [r for r in reasons if r[:2] not in ("RA", "LA", "LL")]
    # Per-lead verdicts.
    per: dict[str, LeadQuality] = {}
    by_problem: dict[str, list[str]] = {}
    for i, nm in enumerate(names):
        flags = list(fatal[i]) + list(minor[i])
        if nm in affected and "electrode_off" not in flags:
            flags.insert(0, "electrode_off")
        verdict = "unusable" if (fatal[i] or nm in affected) else ("acceptable" if minor[i] else "good")
        per[nm] = LeadQuality(verdict=verdict, flags=flags, ksqi=float(ft["ksqi"][i]), psqi=float(ft["psqi"][i]),
                              bassqi=float(ft["bassqi"][i]), noise_uv=float(ft["noise"][i]),
                              amplitude_uv=float(ft["amp"][i]), dc_uv=float(ft["dc"][i]),
                              wander_uv=float(ft["wander"][i]), clip_fraction=float(ft["clip"][i]),
                              hum_uv=float(ft["hum"][i]))
        if nm in affected:
            continue                                      # already explained by the electrode
        for f in fatal[i] + minor[i]:
            by_problem.setdefault(f, []).append(nm)
    for prob in ("missing", "off", "flat", "clipped", "amplitude", "hum", "noisy", "wander", "some noise",
                 "some hum", "some wander"):
        if prob in by_problem:
            who = _group(by_problem[prob], names)
            if prob == "missing":
                reasons.append(f"no signal (missing samples) on {who}")
            elif prob == "flat":
                reasons.append(f"flat line on {who}")
            elif prob == "off":
                reasons.append(f"{who}: {_WORDS['off']} (electrode off or loose?)")
            else:
                reasons.append(f"{who} {_WORDS[prob]}")
    vs = [lq.verdict for lq in per.values()]
    if off or "unusable" in vs:
        verdict = "unusable"
    elif "acceptable" in vs:
        verdict = "acceptable"
    else:
        verdict = "good"
    return QualityReport(verdict=verdict, reasons=reasons, leads=per, electrodes_off=off, fs=fs)
