"""THE topic tree, in code (docs/mqtt.md is the prose). Everything a device says lives under <prefix>/<device_id>/.

Why one module: the device, the fleet CLI, the ACL example and the tests must agree on every topic string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SCHEMA_VERSION = 1
#: Command names a device answers (also advertised in its birth message as "capabilities").
COMMANDS = ("status", "config/get", "config/set", "patient/set", "patient/clear", "alarm/ack",
            "model/install", "model/chunk", "model/rollback")

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")   # \Z: "$" accepts a trailing newline


def check_device_id(device_id: str) -> str:
    """A device id is one topic level: letters, digits, '_', '.', '-' (max 64), so ACL %u/%c patterns match it."""
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise ValueError(f"invalid device id {device_id!r}: use 1-64 of A-Z a-z 0-9 _ . - (no '/', '+', '#')")
    return device_id


@dataclass(frozen=True)
class Topics:
    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def birth(self) -> str:
        return f"{self.base}/birth"

    @property
    def triage(self) -> str:
        return f"{self.base}/triage"

    @property
    def alarm(self) -> str:
        return f"{self.base}/alarm"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def strip(self) -> str:
        """device -> station: the 12-lead strip of one result (ecg.strip/1, durable outbox)."""
        return f"{self.base}/strip"

    @property
    def receipt(self) -> str:
        """station -> device: "stored by <station> at <time>" for messages it committed (ecg.receipt/1)."""
        return f"{self.base}/receipt"

    @property
    def review(self) -> str:
        """station -> device: a clinician's review of one result (ecg.review/1)."""
        return f"{self.base}/review"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def config_reported(self) -> str:
        return f"{self.base}/config/reported"

    @property
    def cmd_filter(self) -> str:
        return f"{self.base}/cmd/#"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/reply"

    def command_name(self, topic: str) -> str | None:
        """The command name of a request topic, or None for replies and foreign topics."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head):]
        if not name or name.endswith("/reply") or name == "reply":
            return None
        return name


def fleet_filter(prefix: str, leaf: str) -> str:
    """Subscription filter for one leaf across the fleet, e.g. fleet_filter("ecg", "availability")."""
    return f"{prefix}/+/{leaf}"


def split_device_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(device_id, leaf) of a topic under <prefix>/, or None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head):]
    if "/" not in rest:
        return None
    device, leaf = rest.split("/", 1)
    return device, leaf
