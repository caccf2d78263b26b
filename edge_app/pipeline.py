"""The daemon's analysis chain, shared by the live daemon, `ecg-edge demo` and `ecg-edge replay`.

    SampleBlock -> WindowAssembler (streaming resampler to 100 Hz + native-rate ring; windows never span
    a gap) -> quality gate (ecg_quality) -> [unusable: cannot_interpret + technical alarm, model skipped]
    -> heart rate (ecg_measure) -> model (LiteRT) -> explanation (Grad-CAM + lead occlusion)
    -> triage -> TriageResult

Why one class for live and replay: `analyse_record` cuts a WFDB record into SampleBlocks and pushes them
through the very same `Pipeline.process_block` the daemon uses, so a replayed record is analysed by
exactly the chain that runs in the ambulance (same resampler state handling, same windows, same gate).
Storage and publishing are the daemon's job (edge_app.daemon), not the chain's.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from edge_app.explanation import explain
from edge_app.jsonsafe import json_safe
from edge_app.results import (Explanation, ModelInfo, PatientContext, QualitySummary, TriageResult, WindowSpan,
                              new_id, utc_now_iso)
from edge_app.triage import decide, merge_thresholds
from edge_app.windowing import Window, WindowAssembler, check_stride
from firmware_bridge.leads import ELECTRODES, LEADS  # noqa: F401 - ELECTRODES re-exported
from firmware_bridge.records import RecordError, read_wfdb_uv  # noqa: F401 - RecordError re-exported

if TYPE_CHECKING:
    from edge_app.config import Config
    from edge_app.inference import LoadedModel
    from edge_app.signal_chain.conditioning import StreamingResampler
    from edge_app.signal_chain.quality import QualityReport
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger(__name__)


@dataclass
class PipelineSettings:
    stride_s: float = 5.0
    length_s: float = 10.0
    threshold_overrides: dict[str, float] = field(default_factory=dict)
    hr_low_bpm: float = 40.0
    hr_high_bpm: float = 150.0
    deadline_s: float = 2.0
    mains_hz: int = 50
    explain_leads: bool = True        # per-lead occlusion for positive findings (12 extra inferences)

    @classmethod
    def from_config(cls, cfg: Config) -> PipelineSettings:
        return cls(stride_s=float(cfg.get("windows.stride_s")), length_s=float(cfg.get("windows.length_s")),
                   threshold_overrides=cfg.thresholds, hr_low_bpm=float(cfg.get("triage.hr_low_bpm")),
                   hr_high_bpm=float(cfg.get("triage.hr_high_bpm")), deadline_s=float(cfg.get("model.deadline_s")),
                   mains_hz=int(cfg.get("signal.mains_hz")))


def _resampler_factory(fs: float) -> StreamingResampler:
    from edge_app.signal_chain.conditioning import StreamingResampler
    return StreamingResampler(fs, missing="propagate")   # missing samples (NaN) reach the 100 Hz ring as NaN


def _quality(window_uv: np.ndarray, fs: float, lead_off: np.ndarray | None, mains_hz: int,
             model_uv: np.ndarray | None = None) -> QualityReport:
    """The gate; a lead whose model input depends on a missing sample (NaN, even just past the window's
    edge, within the resampler's look-ahead) is unusable: a gap never reaches the model (issue 14.7)."""
    from edge_app.signal_chain.quality import ecg_quality
    missing = None if model_uv is None else ~np.isfinite(model_uv).all(axis=0)
    return ecg_quality(window_uv, fs, lead_off=lead_off, mains_hz=mains_hz, missing=missing)


def quality_summary(report: QualityReport) -> QualitySummary:
    """Map the signal chain's QualityReport onto the result's QualitySummary (JSON-safe)."""
    per_lead = {str(lead): json_safe(entry, ndigits=4, unknown=str) for lead, entry in report.leads.items()}
    return QualitySummary(verdict=str(report.verdict), reasons=[str(r) for r in report.reasons],
                          electrodes_off=[str(e) for e in report.electrodes_off], per_lead=per_lead)


@dataclass
class Analysis:
    """A result plus what the daemon needs to store/show it (the raw strip, the quality report)."""
    result: TriageResult
    window: Window
    quality: QualityReport
    overran: bool = False


class Pipeline:
    def __init__(self, model: LoadedModel, settings: PipelineSettings, device_id: str,
                 patient: Callable[[], PatientContext] | None = None,
                 resampler_factory: Callable[[float], StreamingResampler] = _resampler_factory, run_id: str = ""):
        self.model = model
        self.run_id = run_id              # the daemon process's id, stamped on every result
        self.settings = settings
        self.device_id = device_id
        self.patient = patient or (lambda: PatientContext())
        self.resampler_factory = resampler_factory
        self.assembler: WindowAssembler | None = None
        self.backend_name = str(getattr(getattr(model, "backend", None), "name", ""))

    @property
    def thresholds(self) -> dict[str, float]:
        return merge_thresholds(self.model.thresholds, self.settings.threshold_overrides)

    def set_model(self, model: LoadedModel) -> None:
        self.model = model
        self.backend_name = str(getattr(getattr(model, "backend", None), "name", ""))

    def apply(self, settings: PipelineSettings) -> None:
        """Take new runtime settings (stride, thresholds, heart-rate limits, deadline, mains) between windows.
        The window length is fixed by the model (a config change of it is refused before it gets here)."""
        if settings.length_s != self.settings.length_s:
            raise ValueError(f"the window length is fixed at {self.settings.length_s} s while running")
        check_stride(settings.stride_s, settings.length_s)
        self.settings = settings
        if self.assembler is not None:
            self.assembler.stride_s = float(settings.stride_s)

    def warm_up(self, fs: float) -> None:
        """Import and exercise everything the first window needs, so it is not 1 s late (lazy imports,
        interpreter allocation, filter design caches). Never a reason not to start."""
        from edge_app.signal_chain.beats import ecg_measure
        t = np.arange(int(10 * fs)) / fs
        x = np.outer(np.sin(2 * np.pi * 1.2 * t) * 500, np.ones(12))
        try:
            _quality(x, fs, np.zeros((len(x), 9), bool), self.settings.mains_hz)
            ecg_measure(x, fs)
            self.resampler_factory(fs).process(x[:100])
            self.model.predict(np.zeros((1000, 12)), None, None)
        except Exception as e:  # noqa: BLE001 - warm-up is an optimisation
            log.debug("warm-up: %s", e)

    def process_block(self, block: SampleBlock, record: str | None = None, t_arrival: float | None = None) -> list[Analysis]:
        """Push one SampleBlock (received at monotonic time t_arrival); analyse every window it completed."""
        t_arrival = time.monotonic() if t_arrival is None else t_arrival
        if self.assembler is None or self.assembler.fs != float(block.fs):
            self.assembler = WindowAssembler(block.fs, self.settings.stride_s, self.resampler_factory,
                                             length_s=self.settings.length_s)
        out = []
        for window in self.assembler.push(block):
            analysis = self.analyse_window(window, record=record, t_arrival=t_arrival)
            if analysis.result.triage_level == "cannot_interpret" and window.lead_off.any():
                last_off = int(np.nonzero(window.lead_off.any(axis=1))[0][-1])
                self.assembler.retry_after(window, window.start_index + last_off)
            out.append(analysis)
        return out

    def finish(self, record: str | None = None) -> list[Analysis]:
        """End of a finite stream (replay): analyse the windows completed by flushing the resampler."""
        if self.assembler is None:
            return []
        return [self.analyse_window(window, record=record) for window in self.assembler.flush()]

    def analyse_window(self, window: Window, record: str | None = None, t_arrival: float | None = None) -> Analysis:
        t0 = time.monotonic()
        t_arrival = t0 if t_arrival is None else t_arrival
        timings: dict[str, float] = {}
        result_id = new_id()
        patient = self.patient()
        report = _quality(window.native_uv, window.fs, window.lead_off, self.settings.mains_hz, window.model_uv)
        quality = quality_summary(report)
        t1 = time.monotonic()
        timings["quality_ms"] = (t1 - t0) * 1000
        probabilities = None
        heart_rate = None
        explanation = Explanation(summary="Not interpreted: signal unusable." if quality.verdict == "unusable" else "")
        thresholds = self.thresholds
        if quality.verdict != "unusable":
            heart_rate = self._heart_rate(window)
            t2 = time.monotonic()
            timings["beats_ms"] = (t2 - t1) * 1000
            prediction = self.model.predict(window.model_uv, patient.age, patient.sex)
            t3 = time.monotonic()
            timings["model_ms"] = (t3 - t2) * 1000
            probabilities = {c: round(float(p), 6) for c, p in prediction.probabilities.items()}
        decision = decide(probabilities, thresholds, quality.verdict, quality.reasons, heart_rate,
                          self.settings.hr_low_bpm, self.settings.hr_high_bpm, self.device_id, result_id)
        if probabilities is not None:
            t4 = time.monotonic()
            importance = None
            if decision.positive and self.settings.explain_leads:
                importance = self.model.lead_importance(window.model_uv, patient.age, patient.sex)
            explanation = explain(decision.positive, probabilities, thresholds, prediction.cam, importance)
            timings["explain_ms"] = (time.monotonic() - t4) * 1000
        if window.gap_before:
            quality.reasons = quality.reasons + [
                f"window follows a gap in the stream ({', '.join(window.events) or 'samples missing'})"]
        done = time.monotonic()
        timings["analysis_ms"] = (done - t0) * 1000
        timings["since_last_sample_ms"] = (done - t_arrival) * 1000
        overran = (done - t0) > self.settings.deadline_s
        result = TriageResult(
            id=result_id, device_id=self.device_id, time=utc_now_iso(), record=record,
            window=WindowSpan(start_index=int(window.start_index), end_index=int(window.end_index),
                              fs=float(window.fs),
                              start_s=round(window.start_s, 4), end_s=round(window.end_s, 4),
                              device_time_us=window.device_time_us),
            quality=quality, probabilities=probabilities, triage_level=decision.level,
            alarm_priority=decision.priority, explanation=explanation,
            heart_rate_bpm=None if heart_rate is None else round(float(heart_rate), 1), patient=patient,
            model=ModelInfo(version=str(self.model.model_version), sha256=str(self.model.model_sha256),
                            backend=self.backend_name),
            alarms=decision.alarms, gap_before=bool(window.gap_before), run_id=self.run_id,
            timings_ms={k: round(v, 2) for k, v in timings.items()})
        return Analysis(result, window, report, overran)

    def _heart_rate(self, window: Window) -> float | None:
        from edge_app.signal_chain.beats import ecg_measure
        try:
            return ecg_measure(window.native_uv, window.fs).heart_rate_bpm
        except ValueError as e:           # too short / flat: no rate rather than a wrong one
            log.debug("no heart rate: %s", e)
            return None


# ------------------------------------------------------------------------------------------- replay
def read_record(path: str | Path) -> tuple[np.ndarray, float, str]:
    """WFDB record -> ((n, 12) microvolts in LEADS order, fs, name). Missing samples stay NaN (never zeros):
    the quality gate judges a window with a gap "cannot interpret". Errors: RecordError naming file and fix."""
    rec = read_wfdb_uv(path)
    if rec.fs < 100:
        raise RecordError(f"{rec.path}.hea: sampled at {rec.fs:g} Hz; replay needs at least 100 Hz "
                          f"(the model reads 100 Hz)")
    return rec.leads_uv(LEADS), rec.fs, rec.name


def record_blocks(x: np.ndarray, fs: float, block_s: float = 0.1) -> list[SampleBlock]:
    """Cut a record into SampleBlocks as the driver would deliver them (no lead-off information)."""
    from firmware_bridge.samples import SampleBlock
    n = max(1, int(round(block_s * fs)))
    out = []
    for i in range(0, len(x), n):
        seg = x[i:i + n]
        out.append(SampleBlock(first_index=i, fs=fs, leads_uv=seg, lead_off=np.zeros((len(seg), 9), dtype=bool)))
    return out


def analyse_record(path: str | Path, age: float | None = None, sex: str | None = None, model: LoadedModel | None = None,
                   settings: PipelineSettings | None = None, device_id: str = "replay",
                   config: Config | None = None) -> list[TriageResult]:
    """Replay one WFDB record through the daemon's chain; one TriageResult per 10 s window."""
    if config is None:
        from edge_app.config import load_config
        config = load_config(None)
    if model is None:
        from edge_app.inference import load_model
        model = load_model(config.manifest_path, backend=config.get("model.backend"),
                           num_threads=config.get("model.num_threads"))
    settings = settings or PipelineSettings.from_config(config)
    x, fs, name = read_record(path)
    ctx = PatientContext(age=age, sex=sex)
    pipe = Pipeline(model, settings, device_id, patient=lambda: ctx)
    results = []
    for b in record_blocks(x, fs):
        results.extend(a.result for a in pipe.process_block(b, record=str(path)))
    results.extend(a.result for a in pipe.finish(record=str(path)))
    return results
