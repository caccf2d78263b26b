"""The run ledger and telemetry on their own (no model, no daemon): a run says whether the previous one stopped
cleanly, every stream gap is audited and published with where the stream stood before it, and telemetry counts
what passes on the dispatcher. Real audit log, real SampleBlocks."""
from __future__ import annotations

import json
import time

import numpy as np

from edge_app.dispatcher import Dispatcher
from edge_app.messages import BlockReceived, DeviceEvent
from edge_app.run_ledger import RunLedger
from edge_app.storage import AuditLog
from edge_app.telemetry import Telemetry
from firmware_bridge.samples import SampleBlock


def _block(first: int, n: int = 10, gap: int = 0, events: tuple[str, ...] = (), device_us: int | None = None):
    return SampleBlock(first_index=first, fs=500, leads_uv=np.zeros((n, 12)), lead_off=np.zeros((n, 9), bool),
                       gap_before=gap, device_time_us=device_us, events=events)


def _ledger(tmp_path, run_id: str, bus: Dispatcher, audit: AuditLog) -> RunLedger:
    ledger = RunLedger(tmp_path / "run.json", run_id, "dev", audit, bus.publish)
    ledger.subscribe(bus)
    return ledger


def test_a_run_knows_how_the_previous_one_ended(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", "dev")
    bus = Dispatcher()
    events: list[dict] = []
    bus.subscribe(DeviceEvent, lambda m: events.append(m.event))
    first = _ledger(tmp_path, "run-1", bus, audit)
    first.start({"software_version": "x", "pid": 1}, {"fs": 500})
    assert events[-1]["code"] == "started" and events[-1]["previous_stop"] is None and events[-1]["fs"] == 500
    first.stop({"windows": 3, "blocks": 9})
    assert events[-1]["code"] == "stopped" and events[-1]["windows"] == 3
    second = _ledger(tmp_path, "run-2", bus, audit)
    second.start({}, {})
    assert events[-1]["previous_run_id"] == "run-1" and events[-1]["previous_stop"] == "clean"
    third = _ledger(tmp_path, "run-3", bus, audit)          # run-2 never stopped: a SIGKILL or a power cut
    third.start({}, {})
    assert events[-1]["previous_run_id"] == "run-2" and events[-1]["previous_stop"] == "unclean"
    (tmp_path / "run.json").write_text("{broken")
    _ledger(tmp_path, "run-4", bus, audit).start({}, {})
    assert events[-1]["previous_stop"] is None
    audit.close()
    starts = [json.loads(x)["data"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "start"]
    assert [s["run_id"] for s in starts] == ["run-1", "run-2", "run-3", "run-4"]


def test_every_gap_is_audited_and_published_and_telemetry_counts_it(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", "dev")
    bus = Dispatcher()
    events: list[dict] = []
    _ledger(tmp_path, "run-1", bus, audit)
    telemetry = Telemetry()
    telemetry.subscribe(bus)
    bus.subscribe(DeviceEvent, lambda m: events.append(m.event))
    for block in (_block(0, device_us=0), _block(10, device_us=20_000), _block(30, gap=10, device_us=60_000),
                  _block(40, events=("device_reset",), gap=-1)):
        bus.publish(BlockReceived(block, time.monotonic()))
    gaps = [e for e in events if e["code"] == "stream_gap"]
    assert [(g["at_index"], g["missing"], g["prev_end_index"]) for g in gaps] == [(30, 10, 20), (40, -1, 40)]
    assert gaps[0]["prev_end_device_time_us"] == 40_000 and gaps[1]["events"] == ["device_reset"]
    assert telemetry.counters["blocks"] == 4 and telemetry.counters["samples"] == 40
    assert telemetry.counters["gaps"] == 2
    metrics = telemetry.metrics("streaming", None, ["no_device"])
    assert metrics["state"] == "streaming" and metrics["alarms_active"] == ["no_device"]
    assert "inference_ms" not in metrics              # unknown yet: absent, never null
    audit.close()
    kinds = [json.loads(x)["kind"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert kinds.count("stream_gap") == 2
