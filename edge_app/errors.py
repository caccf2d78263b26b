"""Errors shared across the daemon's modules."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot be used. Always names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config key '{key}': {problem}. Fix: {fix}")


class StateConflict(Exception):
    """A valid request that the device's current state refuses (e.g. an alarm already acknowledged).
    Transports answer it as the command router's `conflict` error (HTTP 409)."""
