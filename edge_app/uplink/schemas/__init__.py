"""JSON Schemas (draft 2020-12) of every MQTT payload; docs/mqtt.md explains them. load(name) -> dict."""
from __future__ import annotations

import json
from pathlib import Path

DIR = Path(__file__).resolve().parent
#: topic leaf -> schema file
BY_LEAF = {"triage": "triage.json", "alarm": "alarm.json", "birth": "birth.json", "telemetry": "telemetry.json",
           "config/reported": "config_reported.json", "cmd": "command.json", "reply": "reply.json"}


def load(name: str) -> dict:
    return json.loads((DIR / (name if name.endswith(".json") else name + ".json")).read_text())
