"""What the display's HTTP layer accepts in a request: ids, query parameters, JSON constants.

Why strict: the page's API is reachable from the device's network; every parameter is checked against a
range and refused with a 4xx JSON error that names it, never passed on half-parsed.
"""
from __future__ import annotations

import math
import re
from typing import Any

ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class HttpError(Exception):
    """A refused request: the HTTP status and a message for the {"error": ...} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def reject_constant(name: str) -> Any:
    """json.loads(parse_constant=...): NaN / Infinity are not JSON."""
    raise ValueError(f"{name} is not allowed")


def check_id(result_id: str) -> str:
    if not ID_RE.fullmatch(result_id):
        raise HttpError(400, "ids are 1-128 characters of letters, digits and . _ : -")
    return result_id


def int_param(query: dict[str, list[str]], name: str, default: int | None, lo: int, hi: int) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise HttpError(400, f"query parameter '{name}' must be an integer, got {values[-1]!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"query parameter '{name}' must be between {lo} and {hi}, got {value}")
    return value


def float_param(query: dict[str, list[str]], name: str, default: float | None, lo: float,
                hi: float) -> float | None:
    values = query.get(name)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError:
        raise HttpError(400, f"query parameter '{name}' must be a number, got {values[-1]!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise HttpError(400, f"query parameter '{name}' must be between {lo} and {hi}, got {value}")
    return value
