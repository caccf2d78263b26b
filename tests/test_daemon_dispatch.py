"""The dispatcher routes each message once to its subscribers, in order, isolating a failing one; and adding a
sink to the daemon is one subscriber class + one line of assembly. The sink here (JSON lines of every result
and alarm change) is plugged into a real Daemon (real model, store, audit) fed the blocks of a real PTB-XL
record through the same `on_block` the serial reader's loop calls."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edge_app.config import config_from_dict
from edge_app.daemon import Daemon
from edge_app.dispatcher import Dispatcher
from edge_app.messages import AlarmChanged, DeviceEvent, ResultReady, StatusTick
from edge_app.pipeline import read_record, record_blocks

RECORD = Path(__file__).resolve().parents[1] / "edge_app" / "data" / "records" / "00181_hr"


def test_each_subscriber_gets_its_message_type_in_subscription_order_and_a_failing_one_is_isolated():
    bus = Dispatcher()
    got: list[tuple[str, object]] = []

    def broken(msg: DeviceEvent) -> None:
        raise RuntimeError("sink down")

    bus.subscribe(DeviceEvent, lambda m: got.append(("first", m.event["code"])))
    bus.subscribe(DeviceEvent, broken)
    bus.subscribe(DeviceEvent, lambda m: got.append(("third", m.event["code"])))
    bus.subscribe(StatusTick, lambda m: got.append(("status", m.status)))
    assert bus.wants(DeviceEvent) and bus.wants(StatusTick) and not bus.wants(ResultReady)
    bus.publish(DeviceEvent({"code": "started"}))
    bus.publish(ResultReady.__new__(ResultReady))          # nobody subscribed: nothing happens
    assert got == [("first", "started"), ("third", "started")]
    assert bus.failures == 1


class JsonLinesSink:
    """A sink as a newcomer would write one: results and alarm changes as JSON lines in a file."""

    def __init__(self, path: Path):
        self.path = path

    def subscribe(self, bus: Dispatcher) -> None:
        bus.subscribe(ResultReady, lambda m: self._write({"result": m.result["id"],
                                                          "level": m.result["triage_level"]}))
        bus.subscribe(AlarmChanged, lambda m: self._write({"alarm": m.alarm.id, "code": m.alarm.code,
                                                           "state": m.state}))

    def _write(self, doc: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(doc) + "\n")


def test_a_new_sink_is_one_subscriber_and_sees_every_stored_result_and_alarm(tmp_path):
    cfg = config_from_dict({"device": {"id": "sink-dev"}, "frontend": {"port": str(tmp_path / "none")},
                            "storage": {"state_dir": str(tmp_path / "state")}})
    out = tmp_path / "sink.jsonl"
    daemon = Daemon(cfg, driver_factory=lambda port, baud, fs: None, sinks=(JsonLinesSink(out),))
    daemon.start()
    try:
        x, fs, _ = read_record(RECORD)                  # 10 s: played three times over, cut at 21 s
        for block in record_blocks(np.concatenate([x, x, x])[: int(21 * fs)], fs, block_s=0.02):
            daemon.on_block(block, time.monotonic())
        stored = {r["id"]: r for r in daemon.store.latest(100)}
    finally:
        daemon.shutdown()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    results = [d for d in lines if "result" in d]
    assert len(results) == 3 == len(stored)                       # windows ending at 10, 15, 20 s
    assert {d["result"]: d["level"] for d in results} == {k: r["triage_level"] for k, r in stored.items()}
    # this record is the shipped MI example: the latched MI alarm reaches the sink once, with the stored id
    raised = [d for d in lines if d.get("state") == "raised" and d["code"] == "suspected_mi"]
    assert len(raised) == 1
    assert all(raised[0]["alarm"] in [a["id"] for a in r["alarms"]] for r in stored.values()
               if r["triage_level"] == "high")
