"""Issue 14 item 4: the audit chain is anchored outside the file, so a cut-off end or an edited line with every
later hash recomputed no longer verifies as OK. Real files, the real AuditLog and the real `ecg-edge` CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_app.storage.audit import AuditLog, entry_hash, verify_audit_log
from edge_app.storage.audit_anchor import AnchorWriter, anchor_path, key_path

REPO = Path(__file__).resolve().parents[1]


def _log(tmp_path: Path, n: int = 10, **kw) -> Path:
    p = tmp_path / "audit.jsonl"
    a = AuditLog(p, "dev-a", **kw)
    for i in range(n):
        a.append("result", {"id": f"r{i}", "verdict": "NORM"})
    a.close()
    return p


def _rechain(lines: list[str], start: int = 0) -> list[str]:
    """What an attacker without the device key does after editing: recompute every hash from `start` on."""
    out = lines[:start]
    prev = json.loads(out[-1])["hash"] if out else "0" * 64
    for raw in lines[start:]:
        e = json.loads(raw)
        e["prev_hash"] = prev
        e["hash"] = entry_hash(e)
        prev = e["hash"]
        out.append(json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return out


def _write(p: Path, lines: list[str]) -> None:
    p.write_text("".join(l + "\n" for l in lines))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_app.cli", "audit", "verify", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_untouched_anchored_log_verifies(tmp_path):
    p = _log(tmp_path)
    v = verify_audit_log(p)
    assert v.ok and v.entries == 10 and v.anchored_seq == 10 and not v.notes, v
    assert oct(key_path(p).stat().st_mode & 0o777) == "0o600"
    r = _cli("--file", str(p))
    assert r.returncode == 0 and "OK" in r.stdout and "Traceback" not in r.stderr


def test_truncation_edit_rechain_forgery_and_removal_are_detected(tmp_path, capsys):
    attacks = {}
    p = _log(tmp_path)
    good = p.read_text().splitlines()

    attacks["cut the last 3 entries"] = (good[:-3], "were cut off")
    edited = good[:]
    e = json.loads(edited[3])
    e["data"]["verdict"] = "MI"
    edited[3] = json.dumps(e, sort_keys=True, separators=(",", ":"))
    attacks["edit entry 4 and recompute every later hash"] = (_rechain(edited, 3), "chain recomputed")
    swapped = [json.loads(x) for x in good]
    swapped[8]["data"], swapped[9]["data"] = swapped[9]["data"], swapped[8]["data"]
    attacks["swap the last two entries' contents and recompute"] = (
        _rechain([json.dumps(x, sort_keys=True, separators=(",", ":")) for x in swapped], 8), "chain recomputed")
    extra = json.loads(good[-1])
    forged = good + [json.dumps(dict(extra, seq=11 + i, data={"id": f"x{i}"}), sort_keys=True,
                                separators=(",", ":")) for i in range(2)]
    attacks["append 2 entries without the key"] = (_rechain(forged, 10), "appended without the device key")
    attacks["replace the whole log by a shorter valid chain"] = (_rechain(good[:4], 0), "were cut off")
    for name, (lines, expect) in attacks.items():
        _write(p, lines)
        v = verify_audit_log(p)
        assert not v.ok and any(expect in x for x in v.problems), (name, v.problems)
        r = _cli("--file", str(p))
        assert r.returncode == 1 and "BROKEN" in r.stdout and "Traceback" not in r.stderr, (name, r.stdout, r.stderr)
    _write(p, good)
    assert verify_audit_log(p).ok

    # the anchor itself: forged without the key, wiped, removed
    anchor = anchor_path(p)
    saved = anchor.read_bytes()
    slot = json.loads(saved[:256])
    anchor.write_bytes(json.dumps(dict(slot, seq=7, mac="0" * 64)).ljust(255).encode() + b"\n" + b" " * 256)
    assert any("no authentic head" in x for x in verify_audit_log(p).problems)
    anchor.write_bytes(b"")
    assert any("anchor wiped" in x for x in verify_audit_log(p).problems)
    anchor.unlink()
    assert any("anchor removed" in x for x in verify_audit_log(p).problems)
    anchor.write_bytes(saved)
    assert verify_audit_log(p).ok
    print(f"audit tamper cases tried: {len(attacks) + 3}, detected: {len(attacks) + 3}")


def test_the_device_records_what_it_finds_when_it_reopens_a_cut_log(tmp_path):
    p = _log(tmp_path)
    _write(p, p.read_text().splitlines()[:-4])
    a = AuditLog(p, "dev-a")                # the daemon starts on a log cut short
    a.append("start", {})
    a.close()
    kinds = [json.loads(l)["kind"] for l in p.read_text().splitlines()]
    assert kinds[-2:] == ["audit_truncation_detected", "start"]
    v = verify_audit_log(p)                  # re-anchored, but the evidence stays and fails verification
    assert not v.ok and "audit_truncation_detected" in v.problems[0] and '"anchored_seq": 10' in v.problems[0]


def test_a_crash_between_log_and_anchor_is_tolerated_and_a_published_head_catches_a_keyholder(tmp_path):
    p = _log(tmp_path, 5)
    a = AuditLog(p, "dev-a")
    published = a.head                         # what telemetry carried (audit_head) before any tampering
    a.close()
    lines = p.read_text().splitlines()
    # the device wrote entry 6 and died before updating the anchor: verifies, with a note
    extra = _rechain(lines + [json.dumps(dict(json.loads(lines[-1]), seq=6, kind="stop", data={}),
                                         sort_keys=True, separators=(",", ":"))], 5)
    _write(p, extra)
    v = verify_audit_log(p)
    assert v.ok and v.notes and "not anchored yet" in v.notes[0]
    a = AuditLog(p, "dev-a")                   # reopening re-anchors at 6 without a finding
    a.close()
    assert verify_audit_log(p).ok and verify_audit_log(p).anchored_seq == 6
    # removing the anchor is noticed by the device itself on its next start
    anchor_path(p).unlink()
    a = AuditLog(p, "dev-a")
    a.close()
    v = verify_audit_log(p)
    assert not v.ok and "audit_anchor_invalid" in v.problems[0]
    # someone holding the device key rewrites log AND anchor consistently: the local check cannot tell (the
    # documented limit); the head published before the tampering does
    _write(p, lines[:3])
    w = AnchorWriter(p)
    w.reset(3, json.loads(lines[2])["hash"])
    w.close()
    assert verify_audit_log(p).ok
    v = verify_audit_log(p, head=published)
    assert not v.ok and any("--head" in x for x in v.problems)
    r = _cli("--file", str(p), "--head", published)
    assert r.returncode == 1 and "--head" in r.stdout
    r = _cli("--file", str(p), "--head", "nonsense")
    assert r.returncode == 2 and "SEQ:HASH" in r.stderr and "Traceback" not in r.stderr


def test_rotation_and_a_log_from_before_anchoring(tmp_path):
    p = _log(tmp_path, 40, max_bytes=2000)      # rotates into several segments; the chain and anchor go on
    v = verify_audit_log(p)
    assert v.ok and v.entries == 40 and v.anchored_seq == 40
    # a log written before anchoring existed (no key, no anchor): verifies with a note; opening anchors it
    legacy = tmp_path / "old"
    legacy.mkdir()
    q = _log(legacy, 3)
    anchor_path(q).unlink()
    key_path(q).unlink()
    v = verify_audit_log(q)
    assert v.ok and "not anchored" in v.notes[0]
    a = AuditLog(q, "dev-a")
    a.close()
    v = verify_audit_log(q)
    assert v.ok and v.kinds.get("audit_anchor_created") == 1 and v.anchored_seq == 4
