"""Replay of a backlog: many WFDB records through the daemon's own chain, fast and in little memory.

Why a module of its own (issue 17): a remote clinic back online after weeks, or a hospital re-analysing
stored recordings with a new model, replays thousands of 10 s records. `pipeline.analyse_record` is the
reference (one record, cut into the 0.1 s blocks the serial driver delivers); this module gives the same
results, bit for bit (tests/test_replay_batch.py), with less work per record:

- the model is loaded once for the whole batch (the CLI did that already) and the chain's imports and
  filter designs are warmed once;
- a record is pushed through the same `WindowAssembler` + streaming resampler in blocks of one stride
  (5 s) instead of 0.1 s blocks: the resampler then takes its strided path (no per-block Python
  overhead, no large temporaries) and produces the same 100 Hz samples bit for bit (the resampler's
  taps are accumulated in the same order whatever the block size; tested);
- each window goes through the very same `Pipeline.analyse_window` (gate, beats, model, explanation,
  triage), so nothing about a result can differ but its id, time and timings;
- records are read one at a time and their results are handed out as soon as they exist (a generator):
  memory does not grow with the size of the backlog.

What is not batched, and why: the quality gate of many windows in one call (`ecg_quality_batch`) is no
faster at 500 Hz (the arrays outgrow the CPU caches), and the int8 model takes ~0.1 ms per window, so
neither is worth changing the per-window path that the daemon runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from edge_app.pipeline import Pipeline, PipelineSettings, read_record, record_blocks
from edge_app.results import PatientContext, TriageResult
from firmware_bridge.records import RecordError

log = logging.getLogger(__name__)


@dataclass
class ReplayedRecord:
    """One record of a batch: its results, or why it could not be replayed (nothing else is skipped)."""
    given: str                                  # the name or path as the user gave it
    path: Path | None = None
    results: list[TriageResult] = field(default_factory=list)
    error: str | None = None                    # RecordError message (file, problem, fix)
    seconds_of_signal: float = 0.0


def replay_records(paths: Iterable[str | Path], model: Any, settings: PipelineSettings,
                   patient: PatientContext | None = None, device_id: str = "replay",
                   resolve: Callable[[str], Path] | None = None) -> Iterator[ReplayedRecord]:
    """Analyse each record in turn through the daemon's chain; yield one ReplayedRecord per path, in order.

    resolve: maps what the user typed (a path or a built-in name) to a record path; RecordError from it
    or from reading is reported on that record, and the batch goes on."""
    ctx = patient or PatientContext()
    pipe = Pipeline(model, settings, device_id, patient=lambda: ctx)
    for given in paths:
        item = ReplayedRecord(given=str(given))
        try:
            path = resolve(str(given)) if resolve is not None else Path(given)
            item.path = Path(path)
            x, fs, _name = read_record(path)
        except RecordError as e:
            item.error = str(e)
            yield item
            continue
        item.seconds_of_signal = len(x) / fs
        item.results = analyse_samples(pipe, x, fs, record=str(path))
        yield item


def analyse_samples(pipe: Pipeline, x: Any, fs: float, record: str | None = None) -> list[TriageResult]:
    """One contiguous recording (n, 12) microvolts at fs (NaN = missing) -> its results, as
    `pipeline.analyse_record` gives them. The pipeline's window assembler is started afresh."""
    pipe.assembler = None                       # a new segment: new resampler, windows from sample 0
    block_s = max(1.0, float(pipe.settings.stride_s))
    results: list[TriageResult] = []
    for b in record_blocks(x, fs, block_s=block_s):
        results.extend(a.result for a in pipe.process_block(b, record=record))
    results.extend(a.result for a in pipe.finish(record=record))
    return results
