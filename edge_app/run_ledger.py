"""The run ledger: which daemon process produced what, and every stretch of signal it did not analyse.

Why: the stream index restarts at 0 in every process, so after a restart two results can carry the same
window indices. Every result therefore carries the `run_id` of its process (a uuid4 made once per process),
and the process's start, stop and every stream gap are audited and published as device events
(schema ecg-edge.event/1, topic <prefix>/<device_id>/event), so a remote subscriber can account for every
stretch of signal: a result, a cannot-interpret result with its reason, or a reported gap.
`<state_dir>/run.json` remembers the last run, so the `started` event says whether the previous run stopped
cleanly (a SIGKILL or a power cut leaves no `stopped` event and no `stopped_at`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_app.messages import BlockReceived, DeviceEvent
from edge_app.results import utc_now_iso
from edge_app.storage.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher
    from edge_app.storage import AuditLog

log = logging.getLogger(__name__)
EVENT_SCHEMA = "ecg-edge.event/1"


class RunLedger:
    def __init__(self, path: str | Path, run_id: str, device_id: str, audit: AuditLog,
                 publish: Callable[[DeviceEvent], None]):
        self.path = Path(path)
        self.run_id = run_id
        self.device_id = device_id
        self.audit = audit
        self.publish = publish
        self.previous: dict[str, Any] | None = None          # what begin() found of the previous run
        self._started_at: str | None = None
        self._prev_end: tuple[int, int | None] | None = None  # (stream index, device us) after the last block

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(BlockReceived, self.on_block)

    def begin(self) -> dict[str, Any]:
        """Record this run in run.json; return what is known of the previous one
        ({previous_run_id, previous_stop: clean | unclean | None})."""
        prev: dict[str, Any] = {"previous_run_id": None, "previous_stop": None}
        try:
            old = json.loads(self.path.read_text())
            prev = {"previous_run_id": old.get("run_id"),
                    "previous_stop": "clean" if old.get("stopped_at") else "unclean"}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            log.error("ignoring unreadable %s: %s", self.path, e)
        self.previous = prev
        self._started_at = utc_now_iso()
        self._write(None)
        return prev

    def start(self, info: dict[str, Any], event_info: dict[str, Any]) -> None:
        """The run begins: run.json written, `start` audited (info + what is known of the previous run) and
        the `started` event published (previous run + info + event_info)."""
        prev = self.begin()
        self.audit.append("start", info | {"run_id": self.run_id} | prev)
        self.event("started", prev | info | event_info)

    def stop(self, counters: dict[str, int]) -> None:
        """The run ends cleanly: the `stopped` event (with this run's counters) and run.json marked clean."""
        self.event("stopped", {"counters": counters, "windows": counters["windows"]})
        self._write(utc_now_iso())

    def _write(self, stopped_at: str | None) -> None:
        doc = {"run_id": self.run_id, "pid": os.getpid(), "started_at": self._started_at, "stopped_at": stopped_at}
        atomic_write_bytes(self.path, json.dumps(doc).encode())

    def event(self, code: str, data: dict[str, Any], priority: str = "low") -> dict[str, Any]:
        """Publish a device event (started / stopped / stream_gap); returns it."""
        ev = {"schema": EVENT_SCHEMA, "code": code, "run_id": self.run_id, "device_id": self.device_id,
              "time": utc_now_iso()} | data
        self.publish(DeviceEvent(ev, priority))
        return ev

    def on_block(self, msg: BlockReceived) -> None:
        """Audit and publish every gap the driver reports (missing samples, resync, front-end restart)."""
        block = msg.block
        device_us = None if block.device_time_us is None else int(block.device_time_us)
        if block.gap_before != 0 or block.events:
            gap = {"at_index": int(block.first_index), "missing": int(block.gap_before),
                   "events": list(block.events), "device_time_us": device_us,
                   "prev_end_index": None if self._prev_end is None else self._prev_end[0],
                   "prev_end_device_time_us": None if self._prev_end is None else self._prev_end[1],
                   "fs": float(block.fs)}
            self.audit.append("stream_gap", gap | {"run_id": self.run_id})
            self.event("stream_gap", gap)
        self._prev_end = (int(block.first_index) + block.n,
                          None if device_us is None else device_us + int(round(block.n * 1e6 / float(block.fs))))
