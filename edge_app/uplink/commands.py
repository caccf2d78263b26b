"""Fleet commands: parse, validate, dispatch to the daemon (DeviceControl) or the ModelStore, build the reply.

Why strict: a command changes a medical device's behaviour. Anything malformed (bad JSON, wrong types,
unknown keys, unknown command, oversized payload) gets an error reply and changes NOTHING; validation of
every argument happens before any side effect.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edge_app.errors import ConfigError

from .control import DeviceControl
from .topics import COMMANDS, SCHEMA_VERSION

log = logging.getLogger(__name__)

REQUEST_SCHEMA = f"ecg.cmd/{SCHEMA_VERSION}"
REPLY_SCHEMA = f"ecg.reply/{SCHEMA_VERSION}"
_REQUEST_KEYS = {"schema", "correlation_id", "by", "args", "sent_at"}
_MAX_CORRELATION_LEN = 128
#: Chunked model upload (model/chunk): at most this many chunks and bytes in total; one upload at a time,
#: forgotten after CHUNK_TTL_S without progress.
MAX_CHUNKS = 4096
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
CHUNK_TTL_S = 600.0


class CommandError(Exception):
    """A refused command: code is machine-readable, message says why and what to do."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        self.code, self.message, self.details = code, message, details or {}
        super().__init__(f"{code}: {message}")


@dataclass
class Request:
    name: str
    correlation_id: str | None
    by: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_request(name: str, payload: bytes, max_bytes: int, correlation_data: bytes | None = None) -> Request:
    """Decode and structurally validate a request. Raises CommandError; never touches the device."""
    corr = _decode_correlation(correlation_data)
    if len(payload) > max_bytes:
        raise CommandError("too_large", f"payload of {len(payload)} bytes exceeds the limit of {max_bytes} bytes",
                           {"limit_bytes": max_bytes, "correlation_id": corr})
    if payload.strip() == b"":
        doc: Any = {}
    else:
        try:
            doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            raise CommandError("bad_json", f"payload is not valid UTF-8 JSON: {exc}", {"correlation_id": corr})
    if not isinstance(doc, dict):
        raise CommandError("bad_request", f"payload must be a JSON object, got {type(doc).__name__}",
                           {"correlation_id": corr})
    if corr is None and isinstance(doc.get("correlation_id"), str):
        corr = doc["correlation_id"][:_MAX_CORRELATION_LEN]
    if name not in COMMANDS:  # checked after parsing so an MQTT 3.1.1 admin still gets its correlation id back
        raise CommandError("unknown_command", f"unknown command {name!r}; known: {', '.join(COMMANDS)}",
                           {"correlation_id": corr})
    unknown = set(doc) - _REQUEST_KEYS
    if unknown:
        raise CommandError("bad_request", f"unknown request keys {sorted(unknown)}; allowed: {sorted(_REQUEST_KEYS)}",
                           {"correlation_id": corr})
    schema = doc.get("schema", REQUEST_SCHEMA)
    if schema != REQUEST_SCHEMA:
        raise CommandError("bad_request", f"unsupported schema {schema!r}; this device speaks {REQUEST_SCHEMA}",
                           {"correlation_id": corr})
    cid = doc.get("correlation_id")
    if cid is not None and (not isinstance(cid, str) or not 0 < len(cid) <= _MAX_CORRELATION_LEN):
        raise CommandError("bad_request", "correlation_id must be a non-empty string of at most 128 characters",
                           {"correlation_id": corr})
    by = doc.get("by", "unknown")
    if not isinstance(by, str) or len(by) > 128:
        raise CommandError("bad_request", "'by' must be a string of at most 128 characters", {"correlation_id": corr})
    args = doc.get("args", {})
    if not isinstance(args, dict):
        raise CommandError("bad_request", f"'args' must be a JSON object, got {type(args).__name__}",
                           {"correlation_id": corr})
    req = Request(name=name, correlation_id=corr, by=by or "unknown", args=args)
    _validate_args(req)
    return req


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _decode_correlation(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        return data.decode("utf-8")[:_MAX_CORRELATION_LEN]
    except UnicodeDecodeError:
        return data.hex()[:_MAX_CORRELATION_LEN]


def _expect_keys(req: Request, required: set[str], optional: set[str] = frozenset()) -> None:
    keys = set(req.args)
    missing = required - keys
    extra = keys - required - set(optional)
    if missing:
        raise CommandError("bad_request", f"{req.name}: missing args {sorted(missing)}")
    if extra:
        raise CommandError("bad_request", f"{req.name}: unknown args {sorted(extra)}; "
                                          f"allowed: {sorted(required | set(optional))}")


def _b64(req: Request, key: str) -> bytes:
    return _b64_value(req, key, req.args[key])


def _b64_value(req: Request, key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise CommandError("bad_request", f"{req.name}: '{key}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CommandError("bad_request", f"{req.name}: '{key}' is not valid base64 ({exc})")


def _validate_args(req: Request) -> None:
    a = req.args
    if req.name in ("status", "config/get", "patient/clear", "model/rollback"):
        _expect_keys(req, set())
    elif req.name == "config/set":
        _expect_keys(req, {"changes"})
        if not isinstance(a["changes"], dict) or not a["changes"]:
            raise CommandError("bad_request", "config/set: 'changes' must be a non-empty JSON object "
                                              "like {\"triage.mi_threshold\": 0.4}")
    elif req.name == "patient/set":
        _expect_keys(req, set(), {"age", "sex"})
        if not a:
            raise CommandError("bad_request", "patient/set: give 'age' (years) and/or 'sex' (\"male\"/\"female\")")
        age = a.get("age")
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))
                                or not math.isfinite(age) or not 0 <= age <= 130):
            raise CommandError("bad_request", "patient/set: 'age' must be a number of years in 0..130 or null")
        sex = a.get("sex")
        if sex is not None and sex not in ("male", "female"):
            raise CommandError("bad_request", "patient/set: 'sex' must be \"male\", \"female\" or null")
    elif req.name == "alarm/ack":
        _expect_keys(req, {"alarm_id"})
        if not isinstance(a["alarm_id"], str) or not 0 < len(a["alarm_id"]) <= 128:
            raise CommandError("bad_request", "alarm/ack: 'alarm_id' must be a non-empty string")
    elif req.name == "model/chunk":
        _expect_keys(req, {"upload_id", "index", "count", "total_sha256", "data_b64"})
        uid, idx, cnt, sha = a["upload_id"], a["index"], a["count"], a["total_sha256"]
        if not isinstance(uid, str) or not 0 < len(uid) <= 64:
            raise CommandError("bad_request", "model/chunk: 'upload_id' must be a string of 1..64 characters")
        if isinstance(cnt, bool) or not isinstance(cnt, int) or not 1 <= cnt <= MAX_CHUNKS:
            raise CommandError("bad_request", f"model/chunk: 'count' must be an integer in 1..{MAX_CHUNKS}")
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < cnt:
            raise CommandError("bad_request", "model/chunk: 'index' must be an integer in 0..count-1")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise CommandError("bad_request", "model/chunk: 'total_sha256' must be 64 lowercase hex digits")
        _b64(req, "data_b64")
    elif req.name == "model/install":
        _expect_keys(req, {"model_b64", "manifest_b64", "signature_b64"}, {"files_b64"})
        for key in ("model_b64", "manifest_b64", "signature_b64"):
            _b64(req, key)
        files = a.get("files_b64", {})
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise CommandError("bad_request", "model/install: 'files_b64' must map file names to base64 strings")
        for name in files:
            _b64_value(req, f"files_b64.{name}", files[name])


class CommandProcessor:
    """Executes validated requests. Single-threaded by design: the Uplink runs it on one worker thread."""

    def __init__(self, device_id: str, control: DeviceControl | None, model_store: Any | None,
                 public_key_path: str, max_bytes: int,
                 on_config_reported: Callable[[dict[str, Any]], None] | None = None,
                 on_model_changed: Callable[[dict[str, Any]], None] | None = None):
        self.device_id = device_id
        self.control = control
        self.model_store = model_store
        self.public_key_path = public_key_path
        self.max_bytes = max_bytes
        self.on_config_reported = on_config_reported
        self.on_model_changed = on_model_changed
        self.handled = 0
        self.refused = 0
        self._upload: dict[str, Any] | None = None  # the one chunked model upload in progress

    def handle(self, name: str, payload: bytes, correlation_data: bytes | None = None) -> dict[str, Any]:
        """Run one command; always returns a reply document (ok or error), never raises."""
        corr = _decode_correlation(correlation_data)
        try:
            req = parse_request(name, payload, self.max_bytes, correlation_data)
            corr = req.correlation_id
            result = self._execute(req)
            self.handled += 1
            return self._reply(name, corr, ok=True, result=result)
        except CommandError as exc:
            self.refused += 1
            corr = corr or exc.details.pop("correlation_id", None)
            exc.details.pop("correlation_id", None)
            log.warning("command %s refused: %s", name, exc)
            return self._reply(name, corr, ok=False, error={"code": exc.code, "message": exc.message,
                                                              **({"details": exc.details} if exc.details else {})})
        except Exception as exc:  # a daemon-side bug must still produce a reply, never kill the uplink
            self.refused += 1
            log.exception("command %s failed", name)
            return self._reply(name, corr, ok=False, error={"code": "failed", "message": f"{type(exc).__name__}: {exc}"})

    def _reply(self, name: str, corr: str | None, ok: bool, result: Any = None,
               error: dict[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": REPLY_SCHEMA, "device_id": self.device_id, "command": name,
                               "correlation_id": corr, "ok": ok, "ts": round(time.time(), 3)}
        if ok:
            doc["result"] = result if isinstance(result, dict) else {"value": result}
        else:
            doc["error"] = error
        return doc

    def _need_control(self) -> DeviceControl:
        if self.control is None:
            raise CommandError("unavailable", "this device's daemon exposes no control interface")
        return self.control

    def _execute(self, req: Request) -> dict[str, Any]:
        a = req.args
        if req.name == "status":
            return self._need_control().status()
        if req.name == "config/get":
            return self._need_control().get_config()
        if req.name == "config/set":
            control = self._need_control()
            try:
                reported = control.set_config(dict(a["changes"]))
            except ConfigError as exc:
                raise CommandError("invalid_config", str(exc), {"key": exc.key, "problem": exc.problem, "fix": exc.fix})
            if self.on_config_reported:
                self.on_config_reported(reported)
            return {"applied": True, "by": req.by, "config": reported}
        if req.name == "patient/set":
            try:
                return self._need_control().set_patient(a.get("age"), a.get("sex"))
            except ValueError as exc:
                raise CommandError("bad_request", f"patient/set: {exc}")
        if req.name == "patient/clear":
            return self._need_control().clear_patient()
        if req.name == "alarm/ack":
            try:
                return self._need_control().acknowledge_alarm(a["alarm_id"], req.by)
            except KeyError as exc:
                raise CommandError("not_found", f"alarm/ack: no alarm {a['alarm_id']!r} ({exc})")
        if req.name == "model/install":
            store = self._need_store()
            if not self.public_key_path:
                raise CommandError("unavailable", "no model_public_key configured: set mqtt.model_public_key to the "
                                                  "Ed25519 public key that signs this fleet's models")
            with open(self.public_key_path, "rb") as fh:
                pem = fh.read()
            files = {name: _b64_value(req, f"files_b64.{name}", v) for name, v in a.get("files_b64", {}).items()}
            report = store.install(_b64(req, "model_b64"), _b64(req, "manifest_b64"), _b64(req, "signature_b64"), pem,
                                   files=files)
            if not report.get("ok"):
                raise CommandError("model_rejected", report.get("reason", "model rejected"), {"report": report})
            if self.on_model_changed:
                self.on_model_changed(report)
            return report
        if req.name == "model/chunk":
            return self._chunk(req)
        if req.name == "model/rollback":
            report = self._need_store().rollback()
            if not report.get("ok"):
                raise CommandError("rollback_refused", report.get("reason", "rollback refused"), {"report": report})
            if self.on_model_changed:
                self.on_model_changed(report)
            return report
        raise CommandError("unknown_command", f"unknown command {req.name!r}")  # unreachable: parse checked

    def _chunk(self, req: Request) -> dict[str, Any]:
        """Collect one part of a model/install request that was too big for one message.

        The parts, joined in index order, are the UTF-8 JSON of exactly the `args` of model/install; the last
        missing part triggers the install (same checks: signature, hashes, self-test) and gets its report."""
        self._need_store()
        a = req.args
        now = time.monotonic()
        up = self._upload
        if up is not None and now - up["t"] > CHUNK_TTL_S:
            up = self._upload = None
        if up is None or up["id"] != a["upload_id"]:
            replaced = up["id"] if up is not None else None
            up = self._upload = {"id": a["upload_id"], "count": a["count"], "sha": a["total_sha256"], "parts": {},
                                 "bytes": 0, "t": now, "replaced": replaced}
        if a["count"] != up["count"] or a["total_sha256"] != up["sha"]:
            raise CommandError("bad_request", "model/chunk: 'count'/'total_sha256' differ from earlier chunks of "
                                              f"upload {up['id']}")
        data = _b64(req, "data_b64")
        if a["index"] not in up["parts"]:
            up["bytes"] += len(data)
        up["parts"][a["index"]] = data
        up["t"] = now
        if up["bytes"] > MAX_UPLOAD_BYTES:
            self._upload = None
            raise CommandError("too_large", f"model upload exceeds {MAX_UPLOAD_BYTES} bytes; upload discarded")
        if len(up["parts"]) < up["count"]:
            return {"upload_id": up["id"], "received": len(up["parts"]), "of": up["count"], "complete": False,
                    **({"replaced_upload": up["replaced"]} if up["replaced"] else {})}
        self._upload = None
        blob = b"".join(up["parts"][i] for i in range(up["count"]))
        if hashlib.sha256(blob).hexdigest() != up["sha"]:
            raise CommandError("model_rejected", "reassembled upload does not match total_sha256 (a chunk was "
                                                 "corrupted or mixed up); upload discarded, send it again")
        try:
            args = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CommandError("bad_request", f"reassembled upload is not JSON: {exc}")
        if not isinstance(args, dict):
            raise CommandError("bad_request", "reassembled upload must be the JSON object of model/install args")
        install = Request(name="model/install", correlation_id=req.correlation_id, by=req.by, args=args)
        _validate_args(install)
        report = self._execute(install)
        return {**report, "upload_id": up["id"], "complete": True}

    def _need_store(self) -> Any:
        if self.model_store is None:
            raise CommandError("unavailable", "this device has no model store (model rollout disabled)")
        return self.model_store
