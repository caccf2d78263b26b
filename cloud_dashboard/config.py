"""The station's one TOML configuration, validated (`ecg-cloud serve --config FILE`).

Why one validated file with defaults: a hospital IT person installs this; every mistake must come back naming
the exact key ("mqtt.port") and the fix, before anything starts. Unknown keys are errors (a typo must not
silently fall back to a default).

    [station]  name = "St Mary's ED"   data_dir = "/var/lib/ecg-cloud"
    [database] url = ""                 # "" -> sqlite:///<data_dir>/cloud.sqlite ; postgresql+psycopg://...
    [http]     host = "127.0.0.1"  port = 8080  secure_cookies = false  session_hours = 12
    [mqtt]     host port prefix username password password_file tls ca_file cert_file key_file
               group = "ecg-cloud"  client_id_prefix = "ecg-cloud-ingest"  session_expiry_s = 86400
               max_payload_bytes = 1048576  keepalive_s = 30
    [ingest]   workers = 1  resend_window_h = 24
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration problem: the key, what is wrong, and how to fix it."""

    def __init__(self, key: str, problem: str, fix: str):
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")
        self.key, self.problem, self.fix = key, problem, fix


@dataclass(frozen=True)
class StationConfig:
    name: str = "Receiving station"
    data_dir: str = "./ecg-cloud-data"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookies: bool = False     # set true behind HTTPS: cookies then carry the Secure flag
    session_hours: float = 12.0
    login_max_failures: int = 5       # per user name and per client address, within login_window_s
    login_window_s: float = 300.0


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "ecg"
    username: str = ""
    password: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    group: str = "ecg-cloud"                 # shared-subscription group: all workers of one station
    client_id_prefix: str = "ecg-cloud-ingest"  # worker i connects as "<prefix>-<i>" (fixed: persistent session)
    session_expiry_s: int = 86400            # broker keeps a stopped worker's queue this long
    max_payload_bytes: int = 1024 * 1024      # larger messages are quarantined unread
    keepalive_s: int = 30

    def secret(self) -> str:
        if self.password_file:
            return Path(self.password_file).read_text().splitlines()[0].strip()
        return self.password


@dataclass(frozen=True)
class IngestConfig:
    workers: int = 1
    resend_window_h: float = 24.0     # reviews/receipts re-sent to a device on its birth, this far back


@dataclass(frozen=True)
class CloudConfig:
    station: StationConfig = field(default_factory=StationConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    source: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.station.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_dir / 'cloud.sqlite').resolve()}"

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CloudConfig":
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError("<file>", f"{p} does not exist", "pass --config with the path of the station TOML") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("<file>", f"{p} is not valid TOML ({exc})", "fix the syntax at that line") from None
        cfg = cls.from_dict(raw)
        return dataclasses.replace(cfg, source=str(p))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CloudConfig":
        sections = {"station": StationConfig, "database": DatabaseConfig, "http": HttpConfig, "mqtt": MqttConfig,
                    "ingest": IngestConfig}
        for key in raw:
            if key not in sections:
                raise ConfigError(key, "unknown section", f"use one of [{'], ['.join(sections)}]")
        built = {name: _section(name, typ, raw.get(name, {})) for name, typ in sections.items()}
        cfg = cls(**built)
        _check(cfg)
        return cfg


def _section(name: str, typ: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(name, "must be a table", f"write it as [{name}]")
    fields = {f.name: f for f in dataclasses.fields(typ)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{name}.{key}", "unknown key", f"remove it; known keys: {', '.join(sorted(fields))}")
        want = type(fields[key].default)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not want:
            raise ConfigError(f"{name}.{key}", f"{value!r} is a {type(value).__name__}",
                              f"give a {want.__name__} (default {fields[key].default!r})")
        values[key] = value
    return typ(**values)


def _check(cfg: CloudConfig) -> None:
    for key, port in (("http.port", cfg.http.port), ("mqtt.port", cfg.mqtt.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(key, f"{port} is not a TCP port", "use 1..65535 (0 = any free port)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cfg.mqtt.prefix):
        raise ConfigError("mqtt.prefix", f"{cfg.mqtt.prefix!r} is not one topic level", "use letters, digits, _ . -")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cfg.mqtt.group):
        raise ConfigError("mqtt.group", f"{cfg.mqtt.group!r} is not a valid share name", "use letters, digits, _ . -")
    if not 1 <= cfg.ingest.workers <= 64:
        raise ConfigError("ingest.workers", f"{cfg.ingest.workers} out of range", "use 1..64")
    if cfg.mqtt.max_payload_bytes < 64 * 1024:
        raise ConfigError("mqtt.max_payload_bytes", "below 64 KiB would refuse every strip", "use >= 65536")
    url = cfg.database.url
    if url and not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError("database.url", f"unsupported database {url.split(':')[0]!r}",
                          "use sqlite:///PATH or postgresql+psycopg://user@host:port/db")
    if url.startswith("postgresql://"):
        raise ConfigError("database.url", "no driver named", "write postgresql+psycopg://... (psycopg 3)")
    if cfg.mqtt.tls and not cfg.mqtt.ca_file:
        raise ConfigError("mqtt.ca_file", "tls = true needs the fleet CA", "set ca_file (and cert_file/key_file)")
    if not cfg.station.name.strip():
        raise ConfigError("station.name", "empty", "name the station as crews should read it, e.g. \"St Mary's ED\"")


def write_config(path: str | os.PathLike, cfg: CloudConfig) -> Path:
    """Write cfg as TOML (used by demo and tests; only scalars, so a tiny writer suffices)."""
    lines = []
    for sec in ("station", "database", "http", "mqtt", "ingest"):
        lines.append(f"[{sec}]")
        for f in dataclasses.fields(getattr(cfg, sec)):
            v = getattr(getattr(cfg, sec), f.name)
            lines.append(f"{f.name} = " + (("true" if v else "false") if isinstance(v, bool) else
                                          _toml_str(v) if isinstance(v, str) else repr(v)))
        lines.append("")
    p = Path(path)
    p.write_text("\n".join(lines))
    return p


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
