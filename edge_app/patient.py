"""Patient context: age and sex (either may be unknown), the one validator for them, and their persistence.

The context feeds the model (it is fused with age and sex) and is stamped on every result. It lives in the
daemon and is persisted in <state_dir>/patient.json so a restart mid-call keeps it; "clear" forgets it for
the next patient. It is set through the command router (patient/set, patient/clear) from the control
socket, MQTT or the bedside page, and all of them check it with `validate_patient` below.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from edge_app.results import PatientContext
from edge_app.storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)
AGE_MIN, AGE_MAX = 0, 130
SEXES = ("male", "female")
UNKNOWN = ("", "unknown", "none", "null")


def validate_patient(age: Any, sex: Any) -> PatientContext:
    """THE patient check, for every source (CLI, control socket, MQTT, bedside page, config, patient.json).

    age: years from AGE_MIN to AGE_MAX (a number, not a string), or None / "unknown";
    sex: "male" or "female" (any case), or None / "unknown". Raises ValueError saying what is accepted."""
    if isinstance(age, str) and age.strip().lower() in UNKNOWN:
        age = None
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age):
            raise ValueError(f"age must be a number of years from {AGE_MIN} to {AGE_MAX}, or unknown; got {age!r}")
        if not AGE_MIN <= age <= AGE_MAX:
            raise ValueError(f"age must be a number of years from {AGE_MIN} to {AGE_MAX}, or unknown; got {age!r}")
        age = float(age)
    if isinstance(sex, str):
        sex = None if sex.strip().lower() in UNKNOWN else sex.strip().lower()
    if sex is not None and sex not in SEXES:
        raise ValueError(f"sex must be 'male', 'female' or unknown; got {sex!r}")
    return PatientContext(age=age, sex=sex)


class PatientStore:
    """The current patient context, persisted atomically so a restart does not lose it."""

    def __init__(self, path: str | os.PathLike, default: PatientContext | None = None):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ctx = default or PatientContext()
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self._ctx = validate_patient(saved.get("age"), saved.get("sex"))
            except (OSError, ValueError, AttributeError) as e:     # AttributeError: not a JSON object
                log.warning("ignoring unreadable %s: %s", self.path, e)

    def get(self) -> PatientContext:
        with self._lock:
            return PatientContext(self._ctx.age, self._ctx.sex)

    def set(self, ctx: PatientContext) -> PatientContext:
        with self._lock:
            self._ctx = ctx
            atomic_write_bytes(self.path, json.dumps(ctx.to_dict()).encode())
            return PatientContext(ctx.age, ctx.sex)
