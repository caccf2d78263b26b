"""The command router: one set of command names, one validation, one error shape, for every way in.

Why: a command changes a medical device's behaviour, and it reaches the device three ways: the local control
socket (edge_app/patient.py, used by `ecg-edge patient|status|results|alarms`), MQTT from fleet admins
(edge_app/uplink/commands.py) and the bedside page over HTTP (edge_app/display/hub.py). Each transport only
decodes its own envelope, then calls `CommandRouter.execute(name, args, by)`. So a patient age of 131 is
refused with the same words whether it came from the CLI, a fleet admin or the page, and anything malformed
(wrong types, unknown or missing args, unknown command) changes NOTHING: every argument is checked before
any side effect.

Commands (the names are on the wire: MQTT topics <prefix>/<device>/cmd/<name>, birth "capabilities"):

| name           | args                                   | transports         |
|----------------|----------------------------------------|--------------------|
| status         | -                                      | socket, mqtt       |
| config/get     | -                                      | socket, mqtt       |
| config/set     | changes {"section.key": value}          | socket, mqtt       |
| patient/set    | age (years 0-130 or null), sex          | socket, mqtt, http |
|                | ("male"/"female"/null); an omitted one  |                    |
|                | keeps its current value                 |                    |
| patient/clear  | -                                      | socket, mqtt, http |
| alarm/ack      | alarm_id                               | socket, mqtt, http |
| results/latest | n (1-100, default 10)                  | socket             |
| alarms/list    | -                                      | socket             |
| store/stats    | -                                      | socket             |
| model/install  | model_b64, manifest_b64, signature_b64, | mqtt               |
|                | files_b64 {name: base64}               |                    |
| model/rollback | from, to, not_after, signature_b64     | mqtt               |
|                | (signed order; unsigned -> refused)    |                    |

(`model/chunk`, a model/install split over several MQTT messages, is reassembled by the MQTT transport and
then routed as model/install.)

Error shape (CommandError.to_dict): {"code", "message", "details"?}; codes: bad_request, unknown_command,
not_found, conflict, invalid_config (details: key, problem, fix), unavailable, model_rejected,
rollback_refused, too_large, failed. `http_status` maps a code onto the page's HTTP status.
"""
from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from edge_app.errors import ConfigError, StateConflict
from edge_app.patient import validate_patient

if TYPE_CHECKING:
    from edge_app.model_store import ModelStore

log = logging.getLogger(__name__)
TRANSPORTS = ("socket", "mqtt", "http")
HTTP_STATUS = {"bad_request": 400, "unknown_command": 404, "not_found": 404, "conflict": 409,
               "invalid_config": 400, "unavailable": 503, "too_large": 413}


@runtime_checkable
class DeviceControl(Protocol):
    """The device's operations the router calls (implemented by edge_app.operations.DeviceOperations).
    Why a Protocol: the router and the transports must not import the daemon (arrows point one way)."""

    def status(self) -> dict[str, Any]:
        """Current health: front end, signal quality, model, last result time, ..."""

    def get_config(self) -> dict[str, Any]:
        """The effective configuration, secrets removed. Must include "config_version"."""

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and apply a partial change ("section.key": value, or nested tables).

        Raises edge_app.errors.ConfigError (naming the key and the fix) and applies NOTHING when any change
        is invalid. Returns the new effective config (with its new "config_version"); the uplink publishes it
        retained on .../config/reported. The daemon audits the change.
        """

    def get_patient(self) -> dict[str, Any]:
        """The current patient context {"age": years | "unknown", "sex": "male" | "female" | "unknown"}."""

    def set_patient(self, age: float | None, sex: str | None) -> dict[str, Any]:
        """Set patient context used by the model (age in years, sex "male"/"female"); ValueError if invalid."""

    def clear_patient(self) -> dict[str, Any]:
        """Forget the patient context (new patient)."""

    def acknowledge_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        """Mark an alarm acknowledged by an admin/user; KeyError if unknown, edge_app.errors.StateConflict if
        already acknowledged."""

    def latest(self, n: int = 10) -> list[dict[str, Any]]:
        """The n newest stored results, newest first."""

    def alarms(self) -> list[dict[str, Any]]:
        """Recent alarms, oldest first, each with "active"."""

    def store_stats(self) -> dict[str, Any]:
        """The result store's counts and bytes."""


class CommandError(Exception):
    """A refused command: `code` is machine-readable, `message` says why and what to do."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        self.code, self.message, self.details = code, message, details or {}
        super().__init__(f"{code}: {message}")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


@dataclass(frozen=True)
class Command:
    name: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    transports: frozenset[str] = frozenset(("socket", "mqtt"))


def _cmd(name: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
         transports: tuple[str, ...] = ("socket", "mqtt")) -> Command:
    return Command(name, frozenset(required), frozenset(optional), frozenset(transports))


COMMANDS: dict[str, Command] = {c.name: c for c in (
    _cmd("status"),
    _cmd("config/get"),
    _cmd("config/set", required=("changes",)),
    _cmd("patient/set", optional=("age", "sex"), transports=TRANSPORTS),
    _cmd("patient/clear", transports=TRANSPORTS),
    _cmd("alarm/ack", required=("alarm_id",), transports=TRANSPORTS),
    _cmd("results/latest", optional=("n",), transports=("socket",)),
    _cmd("alarms/list", transports=("socket",)),
    _cmd("store/stats", transports=("socket",)),
    _cmd("model/install", required=("model_b64", "manifest_b64", "signature_b64"), optional=("files_b64",),
         transports=("mqtt",)),
    _cmd("model/rollback", optional=("from", "to", "not_after", "signature_b64"), transports=("mqtt",)),
)}


def names(transport: str) -> tuple[str, ...]:
    """The commands a transport accepts, in table order."""
    return tuple(n for n, c in COMMANDS.items() if transport in c.transports)


def b64(command: str, key: str, value: Any) -> bytes:
    """Decode one base64 argument, or refuse the command naming the argument."""
    if not isinstance(value, str):
        raise CommandError("bad_request", f"{command}: '{key}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CommandError("bad_request", f"{command}: '{key}' is not valid base64 ({exc})") from None


class CommandRouter:
    """Validates and runs commands for one transport on the device's operations (DeviceControl) and, for
    MQTT, its model store. Stateless apart from those: one router per transport over the same operations."""

    def __init__(self, control: DeviceControl | None, transport: str, model_store: ModelStore | None = None,
                 public_key_path: str = ""):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.control = control
        self.transport = transport
        self.model_store = model_store
        self.public_key_path = public_key_path
        self.on_model_changed: Callable[[dict[str, Any]], None] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return names(self.transport)

    def handle(self, name: str, args: Any, by: str = "unknown") -> dict[str, Any]:
        """Run one command; always a reply {"ok": true, "result": ...} or {"ok": false, "error": {...}}."""
        try:
            return {"ok": True, "result": self.execute(name, args, by)}
        except CommandError as exc:
            log.warning("%s command %s refused: %s", self.transport, name, exc)
            return {"ok": False, "error": exc.to_dict()}
        except Exception as exc:  # noqa: BLE001 - a device-side bug must still produce a reply
            log.exception("%s command %s failed", self.transport, name)
            return {"ok": False, "error": {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}}

    def execute(self, name: str, args: Any, by: str = "unknown") -> Any:
        """Validate, then run. Raises CommandError (nothing changed) for anything refused."""
        self.validate(name, args)
        return getattr(self, "_" + name.replace("/", "_"))(dict(args), str(by or "unknown"))

    # ----------------------------------------------------------------------------------- validation
    def validate(self, name: str, args: Any) -> None:
        command = COMMANDS.get(name) if isinstance(name, str) else None
        if command is None or self.transport not in command.transports:
            raise CommandError("unknown_command", f"unknown command {name!r}; known: {', '.join(self.names)}")
        if not isinstance(args, dict):
            raise CommandError("bad_request", f"{name}: args must be a JSON object, got {type(args).__name__}")
        keys = set(args)
        missing = command.required - keys
        extra = keys - command.required - command.optional
        if missing:
            raise CommandError("bad_request", f"{name}: missing args {sorted(missing)}")
        if extra:
            raise CommandError("bad_request", f"{name}: unknown args {sorted(extra)}; "
                                              f"allowed: {sorted(command.required | command.optional)}")
        check = getattr(self, "_check_" + name.replace("/", "_"), None)
        if check is not None:
            check(args)

    @staticmethod
    def _check_config_set(args: dict[str, Any]) -> None:
        if not isinstance(args["changes"], dict) or not args["changes"]:
            raise CommandError("bad_request", "config/set: 'changes' must be a non-empty JSON object "
                                              "like {\"triage.mi_threshold\": 0.4}")

    @staticmethod
    def _check_patient_set(args: dict[str, Any]) -> None:
        if not args:
            raise CommandError("bad_request", "patient/set: give 'age' (years) and/or 'sex' (\"male\"/\"female\"); "
                                              "to forget both use patient/clear")
        try:
            validate_patient(args.get("age"), args.get("sex"))
        except ValueError as exc:
            raise CommandError("bad_request", f"patient/set: {exc}") from None

    @staticmethod
    def _check_alarm_ack(args: dict[str, Any]) -> None:
        if not isinstance(args["alarm_id"], str) or not 0 < len(args["alarm_id"]) <= 128:
            raise CommandError("bad_request", "alarm/ack: 'alarm_id' must be a non-empty string")

    @staticmethod
    def _check_results_latest(args: dict[str, Any]) -> None:
        n = args.get("n", 10)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
            raise CommandError("bad_request", "results/latest: 'n' must be an integer from 1 to 100")

    @staticmethod
    def _check_model_install(args: dict[str, Any]) -> None:
        for key in ("model_b64", "manifest_b64", "signature_b64"):
            b64("model/install", key, args[key])
        files = args.get("files_b64", {})
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise CommandError("bad_request", "model/install: 'files_b64' must map file names to base64 strings")
        for file_name, value in files.items():
            b64("model/install", f"files_b64.{file_name}", value)

    # ---------------------------------------------------------------------------------- operations
    def _device(self) -> DeviceControl:
        if self.control is None:
            raise CommandError("unavailable", "no device operations behind this interface")
        return self.control

    def _status(self, args: dict[str, Any], by: str) -> Any:
        return self._device().status()

    def _config_get(self, args: dict[str, Any], by: str) -> Any:
        return self._device().get_config()

    def _config_set(self, args: dict[str, Any], by: str) -> Any:
        try:
            reported = self._device().set_config(dict(args["changes"]))
        except ConfigError as exc:
            raise CommandError("invalid_config", str(exc), {"key": exc.key, "problem": exc.problem,
                                                             "fix": exc.fix}) from None
        return {"applied": True, "by": by, "config": reported}

    def _patient_set(self, args: dict[str, Any], by: str) -> Any:
        device = self._device()
        if set(args) != {"age", "sex"}:           # an omitted field keeps its current value
            current = validate_patient(*_age_sex(device.get_patient()))
            args = {"age": current.age, "sex": current.sex} | args
        return device.set_patient(args["age"], args["sex"])

    def _patient_clear(self, args: dict[str, Any], by: str) -> Any:
        return self._device().clear_patient()

    def _alarm_ack(self, args: dict[str, Any], by: str) -> Any:
        try:
            return self._device().acknowledge_alarm(args["alarm_id"], by)
        except KeyError as exc:
            raise CommandError("not_found", f"alarm/ack: no alarm {args['alarm_id']!r} ({exc})") from None
        except StateConflict as exc:
            raise CommandError("conflict", f"alarm/ack: {exc}") from None

    def _results_latest(self, args: dict[str, Any], by: str) -> Any:
        return self._device().latest(int(args.get("n", 10)))

    def _alarms_list(self, args: dict[str, Any], by: str) -> Any:
        return self._device().alarms()

    def _store_stats(self, args: dict[str, Any], by: str) -> Any:
        return self._device().store_stats()

    def models(self) -> ModelStore:
        if self.model_store is None:
            raise CommandError("unavailable", "this device has no model store (model rollout disabled)")
        return self.model_store

    def _model_install(self, args: dict[str, Any], by: str) -> Any:
        store = self.models()
        if not self.public_key_path:
            raise CommandError("unavailable", "no model_public_key configured: set mqtt.model_public_key to the "
                                              "Ed25519 public key that signs this fleet's models")
        with open(self.public_key_path, "rb") as fh:
            pem = fh.read()
        files = {name: b64("model/install", f"files_b64.{name}", v) for name, v in args.get("files_b64", {}).items()}
        report = store.install(b64("model/install", "model_b64", args["model_b64"]),
                               b64("model/install", "manifest_b64", args["manifest_b64"]),
                               b64("model/install", "signature_b64", args["signature_b64"]), pem, files=files)
        if not report.get("ok"):
            raise CommandError("model_rejected", report.get("reason", "model rejected"), {"report": report})
        if self.on_model_changed is not None:
            self.on_model_changed(report)
        return report

    def _model_rollback(self, args: dict[str, Any], by: str) -> Any:
        store = self.models()
        pem = b""
        if self.public_key_path:
            with open(self.public_key_path, "rb") as fh:
                pem = fh.read()
        sig = b64("model/rollback", "signature_b64", args["signature_b64"]) if "signature_b64" in args else b""
        report = store.rollback(args.get("from"), args.get("to"), args.get("not_after"), sig, pem)
        if not report.get("ok"):
            raise CommandError("rollback_refused", report.get("reason", "rollback refused"), {"report": report})
        if self.on_model_changed is not None:
            self.on_model_changed(report)
        return report


def _age_sex(patient: dict[str, Any]) -> tuple[Any, Any]:
    return patient.get("age"), patient.get("sex")
