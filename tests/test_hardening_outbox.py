"""Issue 14 item 6: a failing outbox write raises a technical alarm and loses nothing — on a real full filesystem.

The outbox lives on a small tmpfs mounted by the test (CI runs as root); the result store, audit log and alarm
latch are the device's real ones (tests/device_helpers.real_device) on the normal disk; the uplink talks to a
real mosquitto. The tmpfs is filled with a filler file until ENOSPC, so SQLite's own write fails
(sqlite3.OperationalError "database or disk is full") — not a simulated exception.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from device_helpers import real_device
from edge_app.messages import ResultReady, StatusTick
from edge_app.sinks.uplink import UplinkSink
from edge_app.uplink.outbox import Outbox, OutboxFull, OutboxWriteError
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from mqtt_helpers import Collector

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs: a real filesystem that really fills up."""
    mnt = tmp_path / "outbox-fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path, leave: int = 0) -> Path:
    """Write a filler file until the filesystem refuses (ENOSPC), then give back `leave` bytes (so a write
    check on free space passes and the failure comes from SQLite's own write)."""
    filler = fs / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    try:
        with open(filler, "ab") as fh:                      # the last partial block too
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
    except OSError:
        pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _result(i: int) -> dict:
    return {"id": f"r-{i:03d}-{uuid.uuid4().hex[:6]}", "time": "2026-12-04T17:00:00Z", "triage_level": "none",
            "alarm_priority": "none", "findings": [{"label": "NORM", "probability": 0.9}],
            "disclaimer": "triage aid, not a diagnosis", "pad": "x" * 2000}


def test_outbox_put_on_a_full_disk_raises_a_typed_refusal_and_keeps_what_is_queued(small_fs):
    ob = Outbox(small_fs / "o.sqlite", max_bytes=64 * 1024 * 1024, min_free_bytes=0)
    queued = [ob.put("triage", {"n": i}, "high") for i in range(5)]
    fill(small_fs, leave=8 * 1024)
    errors = full = 0
    for i in range(50):                                       # keep writing after the disk is full
        try:
            ob.put("triage", {"n": 100 + i, "pad": "y" * 1000}, "high")
        except OutboxWriteError as exc:
            errors += 1
            assert "disk is full" in str(exc) or "I/O" in str(exc), exc
        except OutboxFull:
            full += 1
    assert errors >= 1, f"SQLite never failed a write (free-space refusals: {full})"
    assert [m.msg_id for m in ob.next_batch(100)][:5] == queued, "rows already queued were lost"
    ob.close()
    again = Outbox(small_fs / "o.sqlite", min_free_bytes=0)  # and after a restart
    assert [m.msg_id for m in again.next_batch(100)][:5] == queued
    again.close()
    print(f"writes on a full disk: 50, OutboxWriteError: {errors}, OutboxFull: {full}, queued rows kept: 5")


@pytest.mark.parametrize("min_free,code,exc_type", [(0, "outbox_write_failed", OutboxWriteError),
                                                     (256 * 1024, "outbox_full", OutboxFull)])
def test_full_outbox_disk_raises_technical_alarm_keeps_results_and_sends_them_later(tmp_path, small_fs, min_free,
                                                                                     code, exc_type):
    dev = real_device(tmp_path, "amb-full")
    with MosquittoBroker(tmp_path) as broker:
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "reconnect_min_s": 0.1,
                                    "reconnect_max_s": 0.5, "telemetry_interval_s": 3600,
                                    "outbox_min_free_bytes": min_free})
        col = Collector(broker.port, "ecg/amb-full/#")
        up = Uplink(cfg, "amb-full", small_fs / "outbox.sqlite")
        sink = UplinkSink(up, dev.state.store, dev.state.alarms)
        sink.subscribe(dev.bus)
        up.start()
        try:
            assert up.wait_connected(10)

            def produce(i: int) -> dict:
                r = _result(i)
                dev.state.store.put(r)                       # the record sink's job: the store has it first
                dev.bus.publish(ResultReady(None, r, None, 500.0, time.monotonic()))
                return r
            first = [produce(i) for i in range(3)]
            assert up.wait_drained(10)
            filler = fill(small_fs, leave=8 * 1024 if min_free == 0 else 0)
            during = [produce(i) for i in range(3, 9)]
            raised = [m for m in dev.published if getattr(m, "state", None) == "raised" and m.alarm.code == code]
            assert len(raised) == 1, [(m.alarm.code, m.state) for m in dev.published]
            assert raised[0].alarm.kind == "technical" and "kept on the device" in raised[0].alarm.message
            assert code in dev.state.alarms.active_codes()
            assert "alarm" in dev.audit_kinds()
            assert sink.failing == code and up.stats()["refused"] >= 1
            # nothing lost: every result is in the store, the refused ones without an outbox message id
            unq = [r["id"] for r in dev.state.store.unqueued()]
            assert unq == [r["id"] for r in during]
            assert all(dev.state.store.get(r["id"]) for r in first + during)
            # a status tick while still full: retried, still refused, no second alarm
            dev.bus.publish(StatusTick({}))
            assert len([m for m in dev.published if getattr(m, "state", None) == "raised"]) == 1
            # space comes back: the next tick queues every stored result in order and the alarm clears
            filler.unlink()
            dev.bus.publish(StatusTick({}))
            assert dev.state.store.unqueued() == [] and sink.failing is None
            assert code not in dev.state.alarms.active_codes()
            assert any(getattr(m, "state", None) == "cleared" and m.alarm.code == code for m in dev.published)
            later = produce(9)
            assert up.wait_drained(15)
            got = [m["result"]["id"] for m in col.wait_for("triage", 10)]
            assert got == [r["id"] for r in first + during + [later]], got
            print(f"{code}: results produced 10, refused while full {len(during)}, delivered 10, lost 0")
        finally:
            up.stop()
            col.close()
            dev.close()
