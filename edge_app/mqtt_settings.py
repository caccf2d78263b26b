"""The [mqtt] section of the daemon's TOML configuration, validated (MqttConfig).

Why a dataclass with its own validator: the daemon's config loader (edge_app/config.py) hands us the raw
dict of the [mqtt] table; every problem must come back as a ConfigError that names the exact key
("mqtt.<name>") and the fix, so an installer on a clinic's Pi can correct it without reading code.
Why here and not in edge_app/uplink/: the config loader sits below every service; the uplink uses these
settings (edge_app.uplink.settings names them for it), the loader must not import the uplink.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from edge_app.errors import ConfigError

PRIORITIES = ("high", "medium", "low", "none")
#: mqtt.strips: "all" results send their strip; "flagged": only high/medium priority (metered links); "off".
STRIP_MODES = ("all", "flagged", "off")


@dataclass(frozen=True)
class MqttConfig:
    """Connection, security and outbox settings for the uplink. Defaults suit a loopback broker."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "ecg"
    keepalive_s: int = 30
    client_id: str = ""  # empty -> "<prefix>-<device_id>"
    protocol: str = "5"  # "5" or "3.1.1"
    username: str = ""
    password: str = ""
    password_file: str = ""  # alternative to password: file whose first line is the password
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    telemetry_interval_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_command_bytes: int = 8 * 1024 * 1024  # largest accepted command payload (model/install included)
    model_public_key: str = ""  # Ed25519 public key PEM that signs model rollouts; empty -> rollout refused
    outbox_max_bytes: int = 512 * 1024 * 1024  # outbox database size cap
    outbox_min_free_bytes: int = 64 * 1024 * 1024  # refuse new messages when the disk has less free space
    historical_after_s: float = 60.0  # a message older than this when sent is flagged "historical"
    max_inflight: int = 20  # QoS 1 messages awaiting PUBACK at once
    strips: str = "all"  # which results also send their 12-lead strip: STRIP_MODES (docs/mqtt.md)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MqttConfig":
        """Validate a raw [mqtt] table. Raises ConfigError("mqtt.<key>", problem, fix)."""
        d = dict(d or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in d:
            if key not in fields:
                raise ConfigError(f"mqtt.{key}", "unknown key",
                                  f"remove it; known keys: {', '.join(sorted(fields))}")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in d:
                continue
            values[name] = _coerce(name, d[name], f.default)
        cfg = cls(**values)
        cfg._check()
        return cfg

    def _check(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ConfigError("mqtt.host", f"invalid host {self.host!r}", "set a hostname or IP address")
        if not 1 <= self.port <= 65535:
            raise ConfigError("mqtt.port", f"{self.port} is outside 1..65535", "use 1883 (plain) or 8883 (TLS)")
        if not self.prefix or any(c in self.prefix for c in "#+ ") or self.prefix.startswith("/") \
                or self.prefix.endswith("/"):
            raise ConfigError("mqtt.prefix", f"invalid topic prefix {self.prefix!r}",
                              "use a plain topic level such as \"ecg\" (no wildcards, spaces or edge slashes)")
        if not 5 <= self.keepalive_s <= 3600:
            raise ConfigError("mqtt.keepalive_s", f"{self.keepalive_s} is outside 5..3600", "use 30")
        if self.protocol not in ("5", "3.1.1"):
            raise ConfigError("mqtt.protocol", f"unsupported protocol {self.protocol!r}", 'use "5" or "3.1.1"')
        if self.password and self.password_file:
            raise ConfigError("mqtt.password_file", "both password and password_file are set", "keep only one")
        if (self.password or self.password_file) and not self.username:
            raise ConfigError("mqtt.username", "a password is set without a username", "set mqtt.username")
        if self.password_file and not os.path.isfile(self.password_file):
            raise ConfigError("mqtt.password_file", f"file {self.password_file!r} does not exist",
                              "point it at a readable file holding the password")
        for key in ("ca_file", "cert_file", "key_file", "model_public_key"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                raise ConfigError(f"mqtt.{key}", f"file {path!r} does not exist", "give the path of an existing PEM file")
        if self.tls and not self.ca_file:
            raise ConfigError("mqtt.ca_file", "tls is enabled but no CA file is given",
                              "set mqtt.ca_file to the CA that signed the broker's certificate")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt.key_file" if self.cert_file else "mqtt.cert_file",
                              "a client certificate needs both cert_file and key_file", "set both or neither")
        if (self.cert_file or self.key_file) and not self.tls:
            raise ConfigError("mqtt.tls", "client certificate given but tls = false", "set mqtt.tls = true")
        if not 1 <= self.telemetry_interval_s <= 86400:
            raise ConfigError("mqtt.telemetry_interval_s", f"{self.telemetry_interval_s} is outside 1..86400", "use 30")
        if not 0.05 <= self.reconnect_min_s <= 3600:
            raise ConfigError("mqtt.reconnect_min_s", f"{self.reconnect_min_s} is outside 0.05..3600", "use 1")
        if not self.reconnect_min_s <= self.reconnect_max_s <= 86400:
            raise ConfigError("mqtt.reconnect_max_s", "must be >= reconnect_min_s and <= 86400", "use 60")
        if not 1024 <= self.max_command_bytes <= 64 * 1024 * 1024:
            raise ConfigError("mqtt.max_command_bytes", f"{self.max_command_bytes} is outside 1 KiB..64 MiB",
                              "use 8388608 (8 MiB), enough for a base64 model of ~6 MiB")
        if self.outbox_max_bytes < 1024 * 1024:
            raise ConfigError("mqtt.outbox_max_bytes", "must be at least 1 MiB", "use 536870912 (512 MiB)")
        if self.outbox_min_free_bytes < 0:
            raise ConfigError("mqtt.outbox_min_free_bytes", "must not be negative", "use 67108864 (64 MiB)")
        if self.historical_after_s < 0:
            raise ConfigError("mqtt.historical_after_s", "must not be negative", "use 60")
        if not 1 <= self.max_inflight <= 1000:
            raise ConfigError("mqtt.max_inflight", f"{self.max_inflight} is outside 1..1000", "use 20")
        if self.strips not in STRIP_MODES:
            raise ConfigError("mqtt.strips", f"unknown mode {self.strips!r}",
                              'use "all" (every result\'s 12-lead strip), "flagged" (only high/medium priority '
                              'results, for metered links) or "off"')

    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        """Plain dict of the settings; from_dict(to_dict()) round-trips (the daemon's config code relies on it).
        redact=True replaces the password with "***" for anything shown or sent (config/get, config/reported)."""
        d = dataclasses.asdict(self)
        if redact and d.get("password"):
            d["password"] = "***"
        return d

    def read_password(self) -> str:
        """The password, from the config or the first line of password_file."""
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n")
        return self.password


def _coerce(name: str, value: Any, default: Any) -> Any:
    key = f"mqtt.{name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true/false, got {value!r}", f"write {key.split('.')[1]} = true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}", f"write a whole number, e.g. {default}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}", f"write a number, e.g. {default}")
        return float(value)
    if isinstance(default, str):
        if name == "protocol" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = "5" if value == 5 else str(value)
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}", "quote the value")
        return value
    return value
