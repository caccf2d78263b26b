"""The one JSON-safe converter: results, status and telemetry -> plain JSON types, NaN/inf -> null.

Why one: JSON has no NaN. A receiver (cloud, display, a machine reading `--json`) must see "not measured"
(null), never a made-up number, and never a payload that a strict parser rejects. Before this module
the daemon, the pipeline, the display hub and the outbox each had their own converter with different
rules (one stringified numpy integers, one let NaN through); now they all call json_safe.

Rules: dict keys -> str; tuples/lists/ndarrays -> lists; numpy scalars -> Python numbers; float NaN and
+-inf -> None; dataclasses -> dicts; objects with to_dict() -> that dict. Anything else is handed to
`unknown` (default: raise TypeError, so a new type is noticed instead of silently stringified).
`ndigits` rounds floats (the pipeline keeps 4 decimals in quality figures).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np


def _raise(obj: Any) -> Any:
    raise TypeError(f"cannot convert a {type(obj).__name__} to JSON")


def json_safe(obj: Any, *, ndigits: int | None = None, unknown: Callable[[Any], Any] = _raise) -> Any:
    """Return obj as plain JSON types (see the module docstring for the rules)."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if not math.isfinite(f):
            return None
        return round(f, ndigits) if ndigits is not None else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v, ndigits=ndigits, unknown=unknown) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, ndigits=ndigits, unknown=unknown) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist(), ndigits=ndigits, unknown=unknown)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj), ndigits=ndigits, unknown=unknown)
    if callable(getattr(obj, "to_dict", None)):
        return json_safe(obj.to_dict(), ndigits=ndigits, unknown=unknown)
    return unknown(obj)
