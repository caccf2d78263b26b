"""JSON Schemas (draft 2020-12) of every MQTT payload; docs/mqtt.md explains them.

load(name) -> dict; validate(doc, name_or_schema) raises SchemaError. validate() uses the `jsonschema`
package when installed and otherwise a small built-in validator for exactly the keywords these files use
(type, const, enum, required, properties, additionalProperties, items, pattern, minLength, maxLength,
minimum, oneOf), so devices and CI need no extra dependency.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent
#: topic leaf -> schema file
BY_LEAF = {"triage": "triage.json", "alarm": "alarm.json", "event": "event.json", "birth": "birth.json",
           "telemetry": "telemetry.json", "config/reported": "config_reported.json", "cmd": "command.json", "reply": "reply.json",
           "strip": "strip.json", "receipt": "receipt.json", "review": "review.json"}
SUPPORTED = {"$schema", "$id", "title", "description", "type", "const", "enum", "required", "properties",
             "additionalProperties", "items", "pattern", "minLength", "maxLength", "minimum", "oneOf"}


class SchemaError(ValueError):
    pass


def load(name: str) -> dict:
    return json.loads((DIR / (name if name.endswith(".json") else name + ".json")).read_text())


#: name -> compiled jsonschema validator. jsonschema.validate() re-checks the schema against its meta-schema on
#: every call (~35 ms for a strip message); a station validating every message compiles each schema once.
_COMPILED: dict[str, Any] = {}


def validate(doc: Any, schema: str | dict, use_jsonschema: bool = True) -> None:
    s = load(schema) if isinstance(schema, str) else schema
    if use_jsonschema:
        try:
            import jsonschema
        except ImportError:
            pass
        else:
            if isinstance(schema, str):
                v = _COMPILED.get(schema)
                if v is None:
                    cls = jsonschema.validators.validator_for(s)
                    cls.check_schema(s)
                    v = _COMPILED[schema] = cls(s)
            else:
                v = jsonschema.validators.validator_for(s)(s)
            exc = jsonschema.exceptions.best_match(v.iter_errors(doc))
            if exc is not None:
                raise SchemaError(f"{'/'.join(map(str, exc.absolute_path)) or '<root>'}: {exc.message}")
            return
    _check(doc, s, "<root>")


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(v: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def _check(v: Any, s: dict, where: str) -> None:
    unknown = set(s) - SUPPORTED
    if unknown:
        raise SchemaError(f"built-in validator does not support {sorted(unknown)} (install jsonschema)")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is_type(v, t) for t in types):
            raise SchemaError(f"{where}: {v!r:.60} is not of type {types}")
    if "const" in s and not (v == s["const"] and type(v) is type(s["const"])):
        raise SchemaError(f"{where}: {v!r:.60} != {s['const']!r}")
    if "enum" in s and v not in s["enum"]:
        raise SchemaError(f"{where}: {v!r:.60} not one of {s['enum']}")
    if isinstance(v, str):
        if "pattern" in s and not re.search(s["pattern"], v):
            raise SchemaError(f"{where}: {v!r:.60} does not match {s['pattern']}")
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            raise SchemaError(f"{where}: length {len(v)} out of range")
    if _is_type(v, "number") and "minimum" in s and v < s["minimum"]:
        raise SchemaError(f"{where}: {v} < {s['minimum']}")
    if isinstance(v, list) and "items" in s:
        for i, item in enumerate(v):
            _check(item, s["items"], f"{where}/{i}")
    if isinstance(v, dict):
        for key in s.get("required", []):
            if key not in v:
                raise SchemaError(f"{where}: '{key}' is a required property")
        props = s.get("properties", {})
        for key, item in v.items():
            if key in props:
                _check(item, props[key], f"{where}/{key}")
            elif s.get("additionalProperties", True) is False:
                raise SchemaError(f"{where}: additional property '{key}' is not allowed")
    if "oneOf" in s:
        ok = 0
        for sub in s["oneOf"]:
            try:
                _check(v, sub, where)
                ok += 1
            except SchemaError:
                pass
        if ok != 1:
            raise SchemaError(f"{where}: matches {ok} of the oneOf alternatives, expected exactly 1")
