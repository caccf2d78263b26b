"""What the uplink needs from the daemon to serve fleet commands.

Why a Protocol: the uplink must not import the daemon (dependency arrows point one way). The daemon
implements these methods; the uplink's command dispatcher only calls them. Every method returns a
JSON-serialisable dict that becomes the command reply's "result".
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DeviceControl(Protocol):
    """Daemon-side actions behind the MQTT commands (see docs/mqtt.md)."""

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

    def set_patient(self, age: float | None, sex: str | None) -> dict[str, Any]:
        """Set patient context used by the model (age in years, sex "male"/"female"); ValueError if invalid."""

    def clear_patient(self) -> dict[str, Any]:
        """Forget the patient context (new patient)."""

    def acknowledge_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        """Mark an alarm acknowledged by an admin/user; KeyError if unknown."""
