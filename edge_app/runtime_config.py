"""Runtime configuration: the file's configuration plus changes made while running, validated and persisted.

Why: fleet admins (MQTT), the crew (control socket) and the bedside page change settings while the device
runs. Every change is validated by edge_app.config (one schema; errors name the key and the fix) and applied
all-or-nothing. The config file sits on the read-only system partition (ProtectSystem=strict), so changes
are kept in <state_dir>/config-overrides.json and re-applied at the next start. MQTT settings cannot change
while running (the link would drop mid-change): they are refused with the fix.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from edge_app.config import Config, apply_changes
from edge_app.errors import ConfigError
from edge_app.storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)
SECRET_KEYS = ("password",)


class RuntimeConfig:
    """The effective Config (`current`), its version, and the persisted runtime overrides."""

    def __init__(self, base: Config, overrides_path: str | Path):
        self.current = base
        self.overrides_path = Path(overrides_path)
        self.overrides: dict[str, Any] = {}

    def load_overrides(self) -> None:
        """Re-apply the overrides persisted by a previous run. A bad file never stops the appliance:
        it is ignored, loudly, and the file's configuration is used."""
        if not self.overrides_path.exists():
            return
        try:
            saved = json.loads(self.overrides_path.read_text())
            new, _ = apply_changes(self.current, saved)
        except (OSError, ValueError, AttributeError) as e:     # ConfigError is a ValueError
            log.error("ignoring %s: %s", self.overrides_path, e)
            return
        self.overrides = saved
        self.current = new
        log.info("applied runtime overrides from %s: %s", self.overrides_path, saved)

    def change(self, changes: Any) -> dict[str, tuple[Any, Any]]:
        """Validate and apply {"section.key": value} (or nested tables); persist; return {key: (old, new)}.
        Raises ConfigError (naming the key and the fix) and changes nothing when any part is invalid."""
        if not isinstance(changes, dict) or not changes:
            raise ConfigError("<changes>", "no changes given", 'send {"section.key": value, ...}')
        for key in changes:
            if key == "mqtt" or key.startswith("mqtt."):
                raise ConfigError(key if "." in key else "mqtt", "MQTT settings cannot be changed while running",
                                  "edit the [mqtt] section of the config file and restart the service")
        new, diff = apply_changes(self.current, changes)
        self.overrides.update({k: v[1] for k, v in diff.items()})
        atomic_write_bytes(self.overrides_path, json.dumps(self.overrides, indent=1).encode())
        self.current = new
        return diff

    def version(self) -> str:
        """Short hash of the effective configuration (changes whenever any value does)."""
        text = json.dumps(self.current.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, plus its config_version."""
        tree = self.current.to_dict()
        for key in SECRET_KEYS:
            if tree.get("mqtt", {}).get(key):
                tree["mqtt"][key] = "***"
        tree["config_version"] = self.version()
        return tree
