"""Result store and audit log: atomic commits, crash recovery, retention that never deletes undelivered
results, tamper-evident hash chain."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_app.storage import AuditLog, ResultStore, verify_audit_log
from edge_app.storage.atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]


def _result(i: int, day: str = "2026-11-30") -> dict:
    return {"id": f"r{i:04d}", "time": f"{day}T04:00:{i % 60:02d}Z", "triage_level": "none", "alarm_priority": "none"}


def _strip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 400, size=(5000, 12))


def test_put_get_strip_roundtrip_at_1uv_resolution(tmp_path):
    s = ResultStore(tmp_path)
    x = _strip()
    st = s.put(_result(1), x, 500)
    assert st.json_path.exists() and (tmp_path / "store" / "results" / "2026-11-30" / "r0001.dat").exists()
    d = s.get("r0001")
    assert d["strip"]["format"] == "WFDB" and d["delivered"] is False
    y, fs = s.strip("r0001")
    assert fs == 500 and y.shape == (5000, 12) and np.max(np.abs(y - x)) <= 0.5 + 1e-9
    assert s.verify() == []
    s.close()


def test_retention_never_deletes_undelivered(tmp_path):
    one = 5000 * 12 * 2 + 2000
    s = ResultStore(tmp_path, max_bytes=int(2.5 * one))
    fulls = [s.put(_result(i), _strip(i), 500).full for i in range(6)]
    assert s.stats()["results"] == 6                     # nothing delivered: nothing deleted
    assert fulls[-1] is True                             # ... and the caller is told (technical alarm)
    for i in range(4):
        assert s.mark_delivered(f"r{i:04d}")
    assert s.put(_result(6), _strip(6), 500).full is True   # still over: 3 undelivered + new one
    ids = s.ids()
    assert all(f"r{i:04d}" in ids for i in (4, 5, 6))       # undelivered ones all kept
    assert "r0000" not in ids                                # oldest delivered went first
    assert s.stats()["undelivered"] == 3
    s.close()


def test_retention_days_removes_old_delivered_only(tmp_path):
    s = ResultStore(tmp_path, retention_days=1)
    s.put(_result(1, day="2020-01-01"), None, None)
    s.put(_result(2, day="2020-01-01"), None, None)
    s.mark_delivered("r0001")
    s.put(_result(3), None, None)
    assert s.ids() == ["r0002", "r0003"]
    s.close()


def test_recovery_reindexes_committed_json_and_removes_orphans(tmp_path):
    s = ResultStore(tmp_path)
    s.put(_result(1), _strip(), 500)
    s.close()
    day = tmp_path / "store" / "results" / "2026-11-30"
    # A result committed (JSON renamed in) but killed before its index row was written:
    atomic_write_bytes(day / "r0002.json", json.dumps(_result(2)).encode())
    # An orphan strip from a write killed before its JSON commit, and a stale temp file:
    (day / "r0003.dat").write_bytes(b"\0" * 10)
    (day / "r0003.hea").write_text("r0003 12 500 5000\n")
    (day / ".r0004.json.tmp-1").write_text("{half")
    s = ResultStore(tmp_path)
    assert s.recovered == ["r0002"]
    assert s.ids() == ["r0001", "r0002"]
    assert sorted(p.name for p in day.iterdir()) == ["r0001.dat", "r0001.hea", "r0001.json", "r0002.json"]
    assert s.verify() == []
    s.close()


def test_delivery_mapping_by_uplink_message_id(tmp_path):
    s = ResultStore(tmp_path)
    s.put(_result(1), None, None)
    s.put(_result(2), None, None)
    assert [d["id"] for d in s.unqueued()] == ["r0001", "r0002"]
    s.set_msg_id("r0001", "m-1")
    assert [d["id"] for d in s.unqueued()] == ["r0002"]
    assert s.mark_delivered_msg("m-1") == "r0001" and s.mark_delivered_msg("nope") is None
    assert [d["id"] for d in s.undelivered()] == ["r0002"]
    s.close()


def test_audit_chain_detects_edit_delete_reorder(tmp_path):
    p = tmp_path / "audit.jsonl"
    a = AuditLog(p, "dev")
    for i in range(5):
        a.append("result", {"id": i})
    a.close()
    v = verify_audit_log(p)
    assert v.ok and v.entries == 5 and v.kinds == {"result": 5}
    lines = p.read_text().splitlines()
    edited = lines[:]
    e = json.loads(edited[2])
    e["data"]["id"] = 99
    edited[2] = json.dumps(e, sort_keys=True, separators=(",", ":"))
    p.write_text("\n".join(edited) + "\n")
    v = verify_audit_log(p)
    assert not v.ok and "line 3" in v.problems[0] and "edited" in v.problems[0]
    p.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    assert not verify_audit_log(p).ok
    p.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    assert not verify_audit_log(p).ok


def test_audit_torn_tail_is_cut_and_recorded(tmp_path):
    p = tmp_path / "audit.jsonl"
    a = AuditLog(p, "dev")
    a.append("start", {})
    a.close()
    with open(p, "ab") as f:
        f.write(b'{"seq":2,"kind":"resu')
    assert not verify_audit_log(p).ok
    a = AuditLog(p, "dev")
    a.append("result", {"id": 1})
    a.close()
    v = verify_audit_log(p)
    assert v.ok and v.kinds == {"start": 1, "audit_tail_repaired": 1, "result": 1}


def test_sigkill_mid_write_leaves_only_whole_results(tmp_path):
    """A child process writes results as fast as it can; SIGKILL it at random points; reopen and verify."""
    code = textwrap.dedent(f"""
        import numpy as np, sys, wfdb
        sys.path.insert(0, {str(ROOT)!r})
        from edge_app.storage import ResultStore, AuditLog
        a = AuditLog({str(tmp_path / 'audit.jsonl')!r}, 'dev')
        s = ResultStore({str(tmp_path)!r}, audit=a)
        x = np.random.default_rng(0).normal(0, 400, size=(5000, 12))
        i = len(s.ids())
        print('ready', flush=True)
        while True:
            rid = f'k{{i:06d}}'
            s.put({{'id': rid, 'time': '2026-11-30T00:00:00Z'}}, x, 500)
            a.append('result', {{'id': rid}})
            i += 1
    """)
    rng = np.random.default_rng(1)
    for _round in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        import time
        time.sleep(0.3 + rng.uniform(0, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        audited = [json.loads(l)["data"]["id"] for l in (tmp_path / "audit.jsonl").read_bytes().splitlines()
                   if l.endswith(b"}") and b'"result"' in l]
        s = ResultStore(tmp_path)
        assert s.verify() == []
        assert set(audited) <= set(s.ids())
        s.close()
    assert len(audited) > 4
    a = AuditLog(tmp_path / "audit.jsonl", "dev")
    a.close()
    assert verify_audit_log(tmp_path / "audit.jsonl").ok


def test_audit_rotates_into_segments_and_the_chain_continues(tmp_path):
    p = tmp_path / "audit.jsonl"
    a = AuditLog(p, "dev", max_bytes=2000)
    for i in range(30):
        a.append("result", {"id": i, "pad": "x" * 50})
    a.close()
    segs = sorted(tmp_path.glob("audit.jsonl.*"))
    assert len(segs) >= 3
    v = verify_audit_log(p)
    assert v.ok and v.entries == 30
    a = AuditLog(p, "dev", max_bytes=2000)          # reopen right after a rotation continues the chain
    a.append("stop", {})
    a.close()
    assert verify_audit_log(p).entries == 31 and verify_audit_log(p).ok
    lines = segs[1].read_text().splitlines()
    segs[1].write_text("\n".join(lines[1:]) + "\n")  # delete one entry inside a segment
    v = verify_audit_log(p)
    assert not v.ok and "audit.jsonl.000002" in v.problems[0]
