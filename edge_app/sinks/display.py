"""The display sink: what the bedside page shows is pushed into its LiveHub.

Why pushes (not reads): the page must never slow the data path or see half-updated state; every push is
one short lock in the hub (edge_app/display/hub.py). The hub reads older results, strips and history
from the result store, so the page's banner and history survive a daemon restart.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_app.messages import AlarmChanged, BlockReceived, PatientChanged, ResultReady, StatusTick

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher
    from edge_app.display.hub import LiveHub
    from edge_app.storage import ResultStore


class DisplaySink:
    def __init__(self, hub: LiveHub, store: ResultStore):
        self.hub = hub
        self.store = store
        hub.result_lookup = store.get
        hub.history_lookup = store.latest
        hub.strip_lookup = self._strip

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(BlockReceived, self.on_block)
        bus.subscribe(ResultReady, self.on_result)
        bus.subscribe(AlarmChanged, self.on_alarm)
        bus.subscribe(StatusTick, self.on_status)
        bus.subscribe(PatientChanged, self.on_patient)

    def _strip(self, result_id: str) -> tuple[float, np.ndarray] | None:
        try:
            strip_uv, fs = self.store.strip(result_id)
            return fs, strip_uv
        except (KeyError, FileNotFoundError):
            return None

    def on_block(self, msg: BlockReceived) -> None:
        self.hub.push_block(msg.block)

    def on_result(self, msg: ResultReady) -> None:
        quality = msg.triage.quality
        self.hub.push_result(msg.result, strip_uv=msg.strip_uv, strip_fs=msg.strip_fs)
        self.hub.push_quality(quality.__dict__ | {"verdict": quality.verdict})
        self.hub.push_heart_rate(msg.triage.heart_rate_bpm)

    def on_alarm(self, msg: AlarmChanged) -> None:
        self.hub.push_alarm(msg.to_dict() | {"acknowledged": msg.alarm.acknowledged_by is not None})

    def on_status(self, msg: StatusTick) -> None:
        self.hub.set_status(msg.status)

    def on_patient(self, msg: PatientChanged) -> None:
        self.hub.set_patient_view(msg.patient)
