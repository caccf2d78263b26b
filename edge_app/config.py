"""The daemon's one configuration file (TOML), its defaults and its validation.

Why one declarative schema: every key has a default, a type, a range and a human "fix" text, so a
bad file is refused at start with an error that names the key and says what to write instead
(a crew cannot debug a stack trace in an ambulance). The same schema validates runtime changes
that arrive over MQTT or the local control socket (`apply_changes`), so there is one rule set.

Sections: [device] [frontend] [signal] [windows] [model] [triage] [patient] [storage] [mqtt]
[display] [control] [logging]. `ecg-edge config check FILE` runs `load_config` and prints errors.
"""
from __future__ import annotations

import copy
import math
import os
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_app.errors import ConfigError
from edge_app.mqtt_settings import MqttConfig

PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped_manifest() -> Path:
    """The shipped model manifest: <repo>/quantized_models/ next to edge_app/ (source tree, editable install),
    else <prefix>/share/ecg-edge/quantized_models/ where `pip install .` puts it (setup.py data_files)."""
    import sys
    in_tree = PACKAGE_DIR.parent / "quantized_models" / "manifest.json"
    installed = Path(sys.prefix) / "share" / "ecg-edge" / "quantized_models" / "manifest.json"
    return in_tree if in_tree.exists() or not installed.exists() else installed


SHIPPED_MANIFEST = _shipped_manifest()


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, and the check that says what is allowed."""
    type: tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    allowed: str = ""          # human text for the fix, e.g. "an integer from 1 to 10"
    runtime: bool = True       # may be changed while running (set_config)


def _rng(lo: float | None = None, hi: float | None = None) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    return ok


def _one_of(*vals: Any) -> Callable[[Any], bool]:
    return lambda v: v in vals


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")   # \Z: "$" accepts a trailing newline
INT, NUM, STR, BOOL = (int,), (int, float), (str,), (bool,)

SCHEMA: dict[str, dict[str, Key]] = {
    "device": {
        "id": Key(STR, socket.gethostname() or "ecg-edge", lambda v: bool(_ID_RE.match(v)),
                  "1-64 characters: letters, digits, '_', '.', '-' (used in MQTT topics)", runtime=False),
    },
    "frontend": {
        "port": Key(STR, "/dev/ttyACM0", lambda v: len(v) > 0, "the serial device path, e.g. /dev/ttyACM0",
                    runtime=False),
        "baudrate": Key(INT, 460800, _one_of(115200, 230400, 460800, 921600, 1000000, 2000000),
                        "one of 115200, 230400, 460800, 921600, 1000000, 2000000", runtime=False),
        "fs": Key(INT, 500, _rng(100, 2000), "the front end's sample rate in Hz, an integer from 100 to 2000",
                  runtime=False),
        "idle_timeout_s": Key(NUM, 1.0, _rng(0.1, 10), "seconds without data before a status check, 0.1 to 10",
                              runtime=False),
    },
    "signal": {
        "mains_hz": Key(INT, 50, _one_of(50, 60), "50 (Europe, most of Asia/Africa) or 60 (Americas)"),
    },
    "windows": {
        "length_s": Key(NUM, 10, _one_of(10, 10.0), "10 (the model reads exactly 10 s windows)", runtime=False),
        "stride_s": Key(NUM, 5, _rng(1, 10), "seconds between results, a number from 1 to 10"),
    },
    "model": {
        "manifest": Key(STR, "", None, "a path to a model manifest.json, or \"\" for the shipped model",
                        runtime=False),
        "backend": Key(STR, "litert", lambda v: v in _backends(),
                       "an inference backend this build has (\"litert\": ai-edge-litert, falling back to "
                       "tflite-runtime; a Coral/TensorRT backend registers its own name)", runtime=False),
        "num_threads": Key(INT, 1, _rng(1, 8), "an integer from 1 to 8", runtime=False),
        "deadline_s": Key(NUM, 2.0, _rng(0.001, 30), "seconds one window's analysis may take, 0.001 to 30 "
                          "(overruns stop the systemd watchdog)"),
        # thresholds: a table CLASS = probability; checked separately (see _check_thresholds)
    },
    "triage": {
        "hr_low_bpm": Key(NUM, 40, _rng(20, 80), "beats per minute below which HR is extreme, 20 to 80"),
        "hr_high_bpm": Key(NUM, 150, _rng(100, 300), "beats per minute above which HR is extreme, 100 to 300"),
    },
    "patient": {
        "age": Key((int, float, str), "unknown",
                   lambda v: v == "unknown" or (not isinstance(v, str) and _rng(0, 130)(v)),
                   "age in years from 0 to 130, or \"unknown\""),
        "sex": Key(STR, "unknown", _one_of("male", "female", "unknown"), "\"male\", \"female\" or \"unknown\""),
    },
    "storage": {
        "state_dir": Key(STR, "/var/lib/ecg-edge", lambda v: len(v) > 0,
                         "a writable directory, e.g. /var/lib/ecg-edge", runtime=False),
        "max_bytes": Key(INT, 2 * 1024 ** 3, _rng(1024 ** 2, None), "bytes for stored results, at least 1048576"),
        "retention_days": Key(NUM, 30, _rng(0, 3650),
                              "days to keep delivered results, 0 to 3650 (0 = only the size limit applies)"),
        "keep_strips": Key(BOOL, True, None, "true or false (store the raw 10 s strip as WFDB)"),
    },
    "display": {
        "enabled": Key(BOOL, False, None, "true or false", runtime=False),
        "host": Key(STR, "127.0.0.1", lambda v: len(v) > 0, "an address to listen on, e.g. 127.0.0.1",
                    runtime=False),
        "port": Key(INT, 8080, _rng(1, 65535), "a TCP port from 1 to 65535", runtime=False),
        "write_token_file": Key(STR, "", None, "a file holding the token (8+ characters) other machines must "
                                "send to change patient or alarms, or \"\" = only the device's own screen may",
                                runtime=False),
        "max_connections": Key(INT, 64, _rng(16, 1024), "concurrent HTTP connections, 16 to 1024 (capped at a "
                               "quarter of the process's file limit)", runtime=False),
    },
    "control": {
        "socket": Key(STR, "", None, "a unix socket path, or \"\" for <state_dir>/control.sock", runtime=False),
    },
    "logging": {
        "level": Key(STR, "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
                     "one of DEBUG, INFO, WARNING, ERROR"),
    },
}
def _backends() -> list[str]:
    try:
        import edge_app.inference  # noqa: F401  (registers the backends)
        from edge_app.inference.backend import available_backends
        return available_backends()
    except ImportError:
        return ["litert"]


def _type_name(t: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    return " or ".join(dict.fromkeys(names[x] for x in t))


def _check_value(section: str, name: str, key: Key, value: Any) -> Any:
    full = f"{section}.{name}"
    ok_type = isinstance(value, key.type) and not (isinstance(value, bool) and bool not in key.type)
    if not ok_type:
        raise ConfigError(full, f"expected {_type_name(key.type)}, got {type(value).__name__} {value!r}",
                          f"set {full} to {key.allowed or _type_name(key.type)}")
    if key.check is not None and not key.check(value):
        raise ConfigError(full, f"value {value!r} is not allowed", f"set {full} to {key.allowed}")
    if key.type == NUM:
        value = float(value) if isinstance(value, float) else value
    return value


def _check_thresholds(value: Any) -> dict[str, float]:
    from edge_app.signal_chain.contract import CLASSES   # the model contract names the classes (lazy: numpy)
    if not isinstance(value, dict):
        raise ConfigError("model.thresholds", f"expected a table, got {type(value).__name__}",
                          "write [model.thresholds] with lines like MI = 0.4")
    out = {}
    for cls, thr in value.items():
        if cls not in CLASSES:
            raise ConfigError(f"model.thresholds.{cls}", "unknown class",
                              f"use one of {', '.join(CLASSES)}")
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not (0.0 < float(thr) < 1.0):
            raise ConfigError(f"model.thresholds.{cls}", f"value {thr!r} is not a probability",
                              "set it to a number strictly between 0 and 1")
        out[cls] = float(thr)
    return out


class Config:
    """Validated configuration. Access as cfg.section["key"] via cfg.get("section.key") or attributes
    cfg.frontend.port style through `cfg.section(name)` dicts; `to_dict()` gives the full TOML tree."""

    def __init__(self, data: dict[str, dict[str, Any]], mqtt: MqttConfig, source: str | None = None):
        self._data = data
        self.mqtt = mqtt
        self.source = source

    def get(self, dotted: str) -> Any:
        section, name = dotted.split(".", 1)
        if section == "mqtt":
            return self.mqtt.to_dict()[name]
        return self._data[section][name]

    def section(self, name: str) -> dict[str, Any]:
        if name == "mqtt":
            return self.mqtt.to_dict()
        return dict(self._data[name])

    # Convenience accessors used across the daemon.
    @property
    def device_id(self) -> str:
        return self._data["device"]["id"]

    @property
    def state_dir(self) -> Path:
        return Path(self._data["storage"]["state_dir"])

    @property
    def control_socket(self) -> Path:
        s = self._data["control"]["socket"]
        return Path(s) if s else self.state_dir / "control.sock"

    @property
    def manifest_path(self) -> Path:
        m = self._data["model"]["manifest"]
        if not m:
            return SHIPPED_MANIFEST
        p = Path(m)
        if not p.is_absolute() and self.source:
            p = Path(self.source).resolve().parent / p
        return p

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self._data["model"].get("thresholds", {}))

    @property
    def patient(self) -> tuple[float | None, str | None]:
        age = self._data["patient"]["age"]
        sex = self._data["patient"]["sex"]
        return (None if age == "unknown" else float(age)), (None if sex == "unknown" else sex)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        d = copy.deepcopy(self._data)
        d["mqtt"] = self.mqtt.to_dict()
        return d


def config_from_dict(raw: dict[str, Any], source: str | None = None) -> Config:
    """Validate a parsed TOML tree and fill defaults. Raises ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("<file>", "the top level must be a TOML table", "write sections like [frontend]")
    known = list(SCHEMA) + ["mqtt"]
    for section in raw:
        if section not in known:
            raise ConfigError(section, "unknown section", f"remove it; known sections: {', '.join(known)}")
    data: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(section, f"expected a [{section}] table, got a {type(given).__name__}",
                              f"write it as a section header [{section}] with keys below it")
        out: dict[str, Any] = {}
        for name, value in given.items():
            if section == "model" and name == "thresholds":
                out["thresholds"] = _check_thresholds(value)
                continue
            if name not in keys:
                extra = ", thresholds" if section == "model" else ""
                raise ConfigError(f"{section}.{name}", "unknown key",
                                  f"remove it or fix its spelling; keys in [{section}]: {', '.join(keys)}{extra}")
            out[name] = _check_value(section, name, keys[name], value)
        for name, key in keys.items():
            out.setdefault(name, key.default)
        if section == "model":
            out.setdefault("thresholds", {})
        data[section] = out
    if data["triage"]["hr_low_bpm"] >= data["triage"]["hr_high_bpm"]:
        raise ConfigError("triage.hr_low_bpm", "must be below triage.hr_high_bpm",
                          "set hr_low_bpm lower than hr_high_bpm")
    if data["windows"]["stride_s"] > data["windows"]["length_s"]:
        raise ConfigError("windows.stride_s", "longer than the window (samples would go unanalysed)",
                          "set stride_s to at most windows.length_s")
    mqtt_raw = raw.get("mqtt", {})
    if not isinstance(mqtt_raw, dict):
        raise ConfigError("mqtt", "expected an [mqtt] table", "write it as a section header [mqtt]")
    mqtt = MqttConfig.from_dict(dict(mqtt_raw))
    return Config(data, mqtt, source)


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and validate a TOML file (None = all defaults)."""
    if path is None:
        return config_from_dict({})
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("<file>", f"{p} does not exist", "check the path, or start from the defaults: ecg-edge config default > FILE") from None
    except OSError as e:
        raise ConfigError("<file>", f"{p} cannot be read ({e.strerror})", "check the path and its permissions") from None
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("<file>", f"{p} is not UTF-8 text", "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("<file>", f"{p} is not valid TOML ({e})", "fix the syntax at the position shown") from None
    return config_from_dict(raw, source=str(p))


def apply_changes(cfg: Config, changes: dict[str, Any]) -> tuple[Config, dict[str, tuple[Any, Any]]]:
    """Validate runtime changes {"section.key": value} or {"section": {"key": value}}.

    Returns the new Config and {dotted key: (old, new)}. Keys marked runtime=False need a restart and
    are refused (ConfigError) so that a remote change never silently fails to take effect.
    """
    flat: dict[str, Any] = {}
    for k, v in changes.items():
        if isinstance(v, dict) and "." not in k:
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    tree = cfg.to_dict()
    diff: dict[str, tuple[Any, Any]] = {}
    for dotted, value in flat.items():
        if "." not in dotted:
            raise ConfigError(dotted, "not a section.key name", "name keys like windows.stride_s")
        section, name = dotted.split(".", 1)
        if section == "model" and (name == "thresholds" or name.startswith("thresholds.")):
            pass                                   # validated with the whole tree below
        elif section in SCHEMA:
            if name not in SCHEMA[section]:
                raise ConfigError(dotted, "unknown key", f"keys in [{section}]: {', '.join(SCHEMA[section])}")
            if not SCHEMA[section][name].runtime:
                raise ConfigError(dotted, "cannot be changed while running",
                                  "edit the config file and restart the service")
        elif section != "mqtt":
            raise ConfigError(dotted, "unknown section", f"known sections: {', '.join(list(SCHEMA) + ['mqtt'])}")
        if section == "model" and name.startswith("thresholds."):
            cls = name.split(".", 1)[1]
            old = tree["model"]["thresholds"].get(cls)
            tree["model"]["thresholds"][cls] = value
        elif section == "model" and name == "thresholds":   # a partial change: merge per class
            old = dict(tree["model"]["thresholds"])
            if not isinstance(value, dict):
                raise ConfigError("model.thresholds", "expected a table of CLASS = probability",
                                  'send {"model.thresholds": {"MI": 0.4}} or {"model.thresholds.MI": 0.4}')
            tree["model"]["thresholds"] = {**old, **value}
            value = tree["model"]["thresholds"]
        else:
            old = tree[section].get(name)
            tree[section][name] = value
        diff[dotted] = (old, value)
    new = config_from_dict(tree, source=cfg.source)
    return new, diff


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: Config) -> str:
    """A complete TOML file for this configuration (all keys, defaults included)."""
    lines = ["# ecg-edge configuration (written by the daemon; a triage aid, not a diagnosis)"]
    for section, values in cfg.to_dict().items():
        sub = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"\n[{section}]")
        for k, v in values.items():
            if v is None or isinstance(v, dict):
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in sub.items():
            lines.append(f"\n[{section}.{k}]")
            for k2, v2 in v.items():
                if v2 is not None:
                    lines.append(f"{k2} = {_toml_value(v2)}")
    return "\n".join(lines) + "\n"


def default_toml() -> str:
    return to_toml(config_from_dict({}))
