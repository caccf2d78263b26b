"""MQTT commands: decode the request envelope, route the command, build the reply envelope.

Why only the envelope here: what a command means and how its arguments are checked is the command router's
(edge_app/command_router.py), shared with the control socket and the bedside page. This module checks what is
MQTT-specific -- payload size, UTF-8 JSON, the request keys (schema, correlation_id, by, args, sent_at), the
MQTT 5 correlation data -- and reassembles `model/chunk` uploads (a model/install too big for one message).
Anything malformed gets an error reply and changes NOTHING.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_app.command_router import CommandError, CommandRouter, b64

from .topics import COMMANDS, SCHEMA_VERSION

if TYPE_CHECKING:
    from edge_app.command_router import DeviceControl
    from edge_app.model_store import ModelStore

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
CHUNK_ARGS = {"upload_id", "index", "count", "total_sha256", "data_b64"}


@dataclass
class Request:
    name: str
    correlation_id: str | None
    by: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_request(name: str, payload: bytes, max_bytes: int, correlation_data: bytes | None = None) -> Request:
    """Decode and check the MQTT envelope of a request. Raises CommandError; never touches the device.
    The arguments are checked by the router (or _check_chunk for model/chunk)."""
    corr = _decode_correlation(correlation_data)
    if len(payload) > max_bytes:
        raise CommandError("too_large", f"payload of {len(payload)} bytes exceeds the limit of {max_bytes} bytes",
                           {"limit_bytes": max_bytes, "correlation_id": corr})
    if payload.strip() == b"":
        doc: Any = {}
    else:
        try:
            doc = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: nesting deeper than the interpreter's limit (found by tests/test_fuzz_mqtt_commands.py)
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
    return Request(name=name, correlation_id=corr, by=by or "unknown", args=args)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _decode_correlation(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        return data.decode("utf-8")[:_MAX_CORRELATION_LEN]
    except UnicodeDecodeError:
        return data.hex()[:_MAX_CORRELATION_LEN]


def _check_chunk(args: dict[str, Any]) -> None:
    keys = set(args)
    if keys != CHUNK_ARGS:
        raise CommandError("bad_request", f"model/chunk: missing args {sorted(CHUNK_ARGS - keys)}" if CHUNK_ARGS - keys
                           else f"model/chunk: unknown args {sorted(keys - CHUNK_ARGS)}; allowed: {sorted(CHUNK_ARGS)}")
    upload_id, index, count, sha = args["upload_id"], args["index"], args["count"], args["total_sha256"]
    if not isinstance(upload_id, str) or not 0 < len(upload_id) <= 64:
        raise CommandError("bad_request", "model/chunk: 'upload_id' must be a string of 1..64 characters")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CHUNKS:
        raise CommandError("bad_request", f"model/chunk: 'count' must be an integer in 1..{MAX_CHUNKS}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise CommandError("bad_request", "model/chunk: 'index' must be an integer in 0..count-1")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise CommandError("bad_request", "model/chunk: 'total_sha256' must be 64 lowercase hex digits")
    b64("model/chunk", "data_b64", args["data_b64"])


class CommandProcessor:
    """Runs MQTT requests through the router. Single-threaded by design: the Uplink runs it on one worker thread."""

    def __init__(self, device_id: str, control: DeviceControl | None, model_store: ModelStore | None,
                 public_key_path: str, max_bytes: int):
        self.device_id = device_id
        self.router = CommandRouter(control, "mqtt", model_store=model_store, public_key_path=public_key_path)
        self.max_bytes = max_bytes
        self.handled = 0
        self.refused = 0
        self._upload: dict[str, Any] | None = None  # the one chunked model upload in progress

    def handle(self, name: str, payload: bytes, correlation_data: bytes | None = None) -> dict[str, Any]:
        """Run one command; always returns a reply document (ok or error), never raises."""
        corr = _decode_correlation(correlation_data)
        try:
            req = parse_request(name, payload, self.max_bytes, correlation_data)
            corr = req.correlation_id
            if req.name == "model/chunk":
                _check_chunk(req.args)
                result = self._chunk(req)
            else:
                result = self.router.execute(req.name, req.args, req.by)
            self.handled += 1
            return self.reply(name, corr, ok=True, result=result)
        except CommandError as exc:
            self.refused += 1
            corr = corr or exc.details.pop("correlation_id", None)
            exc.details.pop("correlation_id", None)
            log.warning("command %s refused: %s", name, exc)
            return self.reply(name, corr, ok=False, error=exc.to_dict())
        except Exception as exc:  # a daemon-side bug must still produce a reply, never kill the uplink
            self.refused += 1
            log.exception("command %s failed", name)
            return self.reply(name, corr, ok=False, error={"code": "failed", "message": f"{type(exc).__name__}: {exc}"})

    def reply(self, name: str, corr: str | None, ok: bool, result: Any = None,
              error: dict[str, Any] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": REPLY_SCHEMA, "device_id": self.device_id, "command": name,
                               "correlation_id": corr, "ok": ok, "ts": round(time.time(), 3)}
        if ok:
            doc["result"] = result if isinstance(result, dict) else {"value": result}
        else:
            doc["error"] = error
        return doc

    def _chunk(self, req: Request) -> dict[str, Any]:
        """Collect one part of a model/install request that was too big for one message.

        The parts, joined in index order, are the UTF-8 JSON of exactly the `args` of model/install; the last
        missing part triggers the install (same checks: signature, hashes, self-test) and gets its report."""
        self.router.models()                   # no model store: refused before collecting anything
        chunk = req.args
        now = time.monotonic()
        up = self._upload
        if up is not None and now - up["t"] > CHUNK_TTL_S:
            up = self._upload = None
        if up is None or up["id"] != chunk["upload_id"]:
            replaced = up["id"] if up is not None else None
            up = self._upload = {"id": chunk["upload_id"], "count": chunk["count"], "sha": chunk["total_sha256"], "parts": {},
                                 "bytes": 0, "t": now, "replaced": replaced}
        if chunk["count"] != up["count"] or chunk["total_sha256"] != up["sha"]:
            raise CommandError("bad_request", "model/chunk: 'count'/'total_sha256' differ from earlier chunks of "
                                              f"upload {up['id']}")
        data = b64("model/chunk", "data_b64", chunk["data_b64"])
        if chunk["index"] not in up["parts"]:
            up["bytes"] += len(data)
        up["parts"][chunk["index"]] = data
        up["t"] = now
        if up["bytes"] > MAX_UPLOAD_BYTES:
            self._upload = None
            raise CommandError("too_large", f"model upload exceeds {MAX_UPLOAD_BYTES} bytes; upload discarded")
        if len(up["parts"]) < up["count"]:
            return {"upload_id": up["id"], "received": len(up["parts"]), "of": up["count"], "complete": False,
                    **({"replaced_upload": up["replaced"]} if up["replaced"] else {})}
        self._upload = None
        blob = b"".join(up["parts"][index] for index in range(up["count"]))
        if hashlib.sha256(blob).hexdigest() != up["sha"]:
            raise CommandError("model_rejected", "reassembled upload does not match total_sha256 (a chunk was "
                                                 "corrupted or mixed up); upload discarded, send it again")
        try:
            args = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CommandError("bad_request", f"reassembled upload is not JSON: {exc}")
        if not isinstance(args, dict):
            raise CommandError("bad_request", "reassembled upload must be the JSON object of model/install args")
        report = self.router.execute("model/install", args, req.by)
        return {**report, "upload_id": up["id"], "complete": True}
