"""The signal chain shared by the device and by training (one source of truth).

Importing this package must stay cheap and free of daemon code: training imports it. Public names
are resolved lazily (PEP 562), so `import edge_app.signal_chain` loads nothing but this file, and
`from edge_app.signal_chain import ecg_peaks` loads only numpy/scipy and the module that holds it.

Public API:
- contract:      make_model_input, demographics_vector, CONTRACT, LEADS, CLASSES, FS_HZ, N_SAMPLES
- conditioning:  resample_to_model_rate, StreamingResampler, StreamingConditioner, ecg_clean
- quality:       ecg_quality, QualityReport, LeadQuality, ELECTRODES, ELECTRODE_LEADS
- beats:         ecg_peaks, ecg_rate, ecg_measure, BeatMeasurements
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    **{n: "contract" for n in ("make_model_input", "demographics_vector", "remove_baseline", "CONTRACT",
                               "LEADS", "CLASSES", "FS_HZ", "N_SAMPLES", "ContractError")},
    **{n: "conditioning" for n in ("resample_to_model_rate", "StreamingResampler", "StreamingConditioner",
                                   "ecg_clean", "ConditioningError", "STREAM_TOLERANCE_UV")},
    **{n: "quality" for n in ("ecg_quality", "QualityReport", "LeadQuality", "QualityError", "ELECTRODES",
                              "ELECTRODE_LEADS")},
    **{n: "beats" for n in ("ecg_peaks", "ecg_rate", "ecg_measure", "BeatMeasurements", "BeatError")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
