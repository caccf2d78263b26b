"""Hash-chained, append-only audit log (JSON lines).

Each entry carries `prev_hash` (the previous entry's `hash`) and its own `hash` = SHA-256 of the
canonical JSON of the entry without `hash`. Editing, deleting or reordering any committed entry breaks
the chain, which `verify_audit_log` (CLI: `ecg-edge audit verify`) detects and locates.

Why fsync per entry: entries record what the device concluded and who acknowledged what; an entry that
was reported as written must survive a power cut. A crash can only leave a torn *last* line (never
committed); on open it is cut off and the cut is itself recorded as an `audit_tail_repaired` entry, so
the repair is visible rather than silent.

Anchor (audit_anchor.py): after each entry the head (seq, hash) is written, authenticated with a device key,
to a file beside the log. A chain cut short or edited and re-hashed no longer matches it: `verify_audit_log`
reports it, and so does the next AuditLog open (which records what it found as an audit entry before going on:
audit_truncation_detected, audit_anchor_mismatch, audit_anchor_invalid, audit_unanchored_entries; a log from
before anchoring gets audit_anchor_created). Guarantee and limit: see audit_anchor.py and docs/daemon.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edge_app.results import utc_now_iso
from edge_app.storage.atomic import fsync_dir
from edge_app.storage.audit_anchor import AnchorError, AnchorWriter, anchor_path, key_path, load_key, read_anchor

log = logging.getLogger(__name__)
GENESIS = "0" * 64
#: entries the log writes about itself when its anchor disagrees: verify reports them as problems
ANCHOR_FINDINGS = ("audit_truncation_detected", "audit_anchor_mismatch", "audit_anchor_invalid",
                   "audit_unanchored_entries")


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


class AuditLog:
    """Append-only; thread-safe. Kinds used: start, stop, result, alarm, alarm_ack, config_change,
    model_loaded, patient_set, patient_cleared, store_full, result_recovered, audit_tail_repaired,
    result_received, review_received (the receiving station's receipts and reviews)."""

    def __init__(self, path: str | os.PathLike, device_id: str = "", max_bytes: int = 64 * 1024 * 1024):
        self.path = Path(path)
        self.device_id = device_id
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev_of_last = GENESIS
        self._seq, self._last_hash, repaired = self._recover_tail()
        self._anchor = AnchorWriter(self.path)
        finding = self._check_anchor()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if repaired:
            self.append("audit_tail_repaired", {"truncated_bytes": repaired})
        if finding:
            log.error("audit log %s: %s %s", self.path, finding[0], finding[1])
            self.append(*finding)

    def _check_anchor(self) -> tuple[str, dict[str, Any]] | None:
        """Compare the log's head with its anchor; on disagreement re-anchor at the log's head and return the
        finding to audit (the evidence stays in the chain, verify reports it)."""
        seq, h = self._seq, self._last_hash
        try:
            head = self._anchor.read()
        except AnchorError as exc:
            self._anchor.reset(seq, h)
            return "audit_anchor_invalid", {"reason": str(exc), "log_seq": seq}
        finding = None
        if head is None:
            if seq and self._anchor.key_existed:
                finding = "audit_anchor_invalid", {"reason": "the anchor is missing or empty although the device "
                                                             "key exists (removed?)", "log_seq": seq}
            elif seq:
                finding = "audit_anchor_created", {"log_seq": seq, "note": "entries before this were not anchored"}
        elif head.seq > seq:
            finding = "audit_truncation_detected", {"anchored_seq": head.seq, "log_seq": seq}
        elif head.seq == seq and head.hash != h:
            finding = "audit_anchor_mismatch", {"anchored_seq": head.seq, "anchored_hash": head.hash, "log_hash": h}
        elif head.seq == seq - 1 and head.hash != self._prev_of_last:
            finding = "audit_anchor_mismatch", {"anchored_seq": head.seq, "anchored_hash": head.hash}
        elif head.seq < seq - 1:
            finding = "audit_unanchored_entries", {"anchored_seq": head.seq, "log_seq": seq}
        if finding is not None or (head is not None and head.seq != seq):
            self._anchor.reset(seq, h)
        return finding

    def _recover_tail(self) -> tuple[int, str, int]:
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
            os.fsync(fd)
            os.close(fd)
            fsync_dir(self.path.parent)
        size = self.path.stat().st_size
        if size == 0:                       # fresh, or just rotated: the chain goes on from the last segment
            segs = rotated_segments(self.path)
            if segs:
                last = _last_entry(segs[-1])
                if last is not None:
                    self._prev_of_last = str(last.get("prev_hash", GENESIS))
                    return int(last["seq"]), str(last["hash"]), 0
            return 0, GENESIS, 0
        with open(self.path, "rb") as f:
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read()
        repaired = 0
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = (size - back) + cut + 1 if cut >= 0 else (0 if back == size else size - back)
            repaired = size - keep
            log.warning("audit log %s: cutting a torn last line (%d bytes) left by a crash", self.path, repaired)
            with open(self.path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            tail = tail[: cut + 1] if cut >= 0 else b""
        lines = [ln for ln in tail.split(b"\n") if ln.strip()]
        if not lines:
            return 0, GENESIS, repaired
        last = json.loads(lines[-1])
        self._prev_of_last = str(last.get("prev_hash", GENESIS))
        return int(last["seq"]), str(last["hash"]), repaired

    def _rotate(self) -> None:
        """Close the full file as segment <name>.NNNNNN and continue the SAME chain in a new file.
        Nothing is ever deleted: the audit trail is kept whole (it is small: ~0.7 kB per result)."""
        os.fsync(self._fd)
        os.close(self._fd)
        n = len(rotated_segments(self.path)) + 1
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{n:06d}"))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        fsync_dir(self.path.parent)

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.max_bytes and os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
            entry = {"seq": self._seq + 1, "time": utc_now_iso(), "device_id": self.device_id, "kind": kind,
                     "data": data, "prev_hash": self._last_hash}
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            b = line.encode("utf-8")
            view = memoryview(b)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
            self._seq += 1
            self._last_hash = entry["hash"]
            try:
                self._anchor.update(self._seq, self._last_hash)
            except OSError as exc:   # the entry is written; a lagging anchor shows up in verify
                log.error("audit anchor not updated at seq %d: %s", self._seq, exc)
            return entry

    @property
    def last_hash(self) -> str:
        return self._last_hash

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def head(self) -> str:
        """"SEQ:HASH" of the last entry: published in telemetry (audit_head) so a copy lives off the device;
        `ecg-edge audit verify --head SEQ:HASH` checks the log against it."""
        return f"{self._seq}:{self._last_hash}"

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
            self._anchor.close()


def rotated_segments(path: str | os.PathLike) -> list[Path]:
    """Full, closed segments of an audit log, oldest first (audit.jsonl.000001, ...)."""
    p = Path(path)
    segs = [q for q in p.parent.glob(p.name + ".*") if q.suffix[1:].isdigit()]
    return sorted(segs, key=lambda q: int(q.suffix[1:]))


def _last_entry(path: Path) -> dict[str, Any] | None:
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - (1 << 20)))
        lines = [ln for ln in f.read().split(b"\n") if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def iter_entries(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)


@dataclass
class AuditVerification:
    ok: bool
    entries: int
    last_hash: str
    problems: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    anchored_seq: int | None = None
    notes: list[str] = field(default_factory=list)


def _parse_head(head: str | None) -> tuple[int, str] | None:
    if not head:
        return None
    seq, _, h = head.partition(":")
    if not seq.isdigit() or len(h) != 64:
        raise ValueError(f"head {head!r} is not SEQ:HASH (a seq number and a 64-hex-digit hash)")
    return int(seq), h.lower()


def verify_audit_log(path: str | os.PathLike, head: str | None = None) -> AuditVerification:
    """Walk the chain through every rotated segment and the current file; report the first broken link
    (line numbers are 1-based, per file). Then check the chain against its anchor (the authenticated head kept
    beside the log) and, when given, against `head` = "SEQ:HASH" recorded elsewhere (e.g. the audit_head the
    device reported in its telemetry): a log cut short or edited and re-hashed fails here."""
    prev, n, problems, kinds = GENESIS, 0, [], {}
    notes: list[str] = []
    p = Path(path)
    if not p.exists():
        return AuditVerification(False, 0, GENESIS, [f"{p} does not exist"])
    anchored = None
    ap, kp = anchor_path(p), key_path(p)
    if ap.exists() or kp.exists():
        try:
            anchored = read_anchor(ap, load_key(kp))
            if anchored is None and ap.exists() and p.stat().st_size:
                problems.append(f"{ap.name} holds no head although the log has entries (anchor wiped)")
            elif anchored is None and not ap.exists():
                problems.append(f"{ap.name} is missing although the device key exists (anchor removed)")
        except AnchorError as exc:
            problems.append(str(exc))
    else:
        notes.append("not anchored (no anchor or device key beside the log): a cut-off end cannot be detected "
                     "from the log alone; compare with a published head (--head SEQ:HASH)")
    external = _parse_head(head)
    want = {s for s in ((anchored.seq if anchored else None), (external[0] if external else None)) if s}
    hash_at: dict[int, str] = {}
    findings: list[str] = []
    for fp in rotated_segments(p) + [p]:
        with open(fp, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            problems.append(f"{fp.name}: last line is torn (no newline): a crash happened after the last verified entry")
        for lineno, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            where = f"{fp.name} line {lineno}"
            try:
                e = json.loads(raw)
            except json.JSONDecodeError:
                problems.append(f"{where}: not valid JSON")
                break
            if e.get("prev_hash") != prev:
                problems.append(f"{where} (seq {e.get('seq')}): prev_hash does not match the previous entry")
                break
            if entry_hash(e) != e.get("hash"):
                problems.append(f"{where} (seq {e.get('seq')}): content does not match its hash (edited)")
                break
            if e.get("seq") != n + 1:
                problems.append(f"{where}: seq {e.get('seq')} where {n + 1} was expected")
                break
            prev = e["hash"]
            n += 1
            kinds[e.get("kind", "?")] = kinds.get(e.get("kind", "?"), 0) + 1
            if n in want:
                hash_at[n] = prev
            if e.get("kind") in ANCHOR_FINDINGS:
                findings.append(f"{where} (seq {n}): the device found its log disagreeing with the anchor: "
                                f"{e['kind']} {json.dumps(e.get('data'), sort_keys=True)}")
        if problems:
            break
    if not problems:
        problems += findings
        for label, ref in (("anchor", (anchored.seq, anchored.hash) if anchored else None), ("--head", external)):
            if ref is None:
                continue
            seq, h = ref
            if n < seq:
                problems.append(f"the log ends at seq {n} but the {label} records seq {seq}: "
                                f"{seq - n} entries at the end were cut off")
            elif hash_at.get(seq) != h:
                problems.append(f"entry seq {seq} does not match the {label}'s hash: the log was edited and its "
                                "chain recomputed")
        if anchored is not None and not problems:
            after = n - anchored.seq
            if after > 1:
                problems.append(f"{after} entries after the anchored head (seq {anchored.seq}); a crash leaves at "
                                "most 1: entries were appended without the device key")
            elif after == 1:
                notes.append("the last entry is not anchored yet (a crash between the log write and the anchor)")
    return AuditVerification(not problems, n, prev, problems, kinds, anchored.seq if anchored else None, notes)
