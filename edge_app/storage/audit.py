"""Hash-chained, append-only audit log (JSON lines).

Each entry carries `prev_hash` (the previous entry's `hash`) and its own `hash` = SHA-256 of the
canonical JSON of the entry without `hash`. Editing, deleting or reordering any committed entry breaks
the chain, which `verify_audit_log` (CLI: `ecg-edge audit verify`) detects and locates.

Why fsync per entry: entries record what the device concluded and who acknowledged what; an entry that
was reported as written must survive a power cut. A crash can only leave a torn *last* line (never
committed); on open it is cut off and the cut is itself recorded as an `audit_tail_repaired` entry, so
the repair is visible rather than silent.
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

log = logging.getLogger(__name__)
GENESIS = "0" * 64


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


class AuditLog:
    """Append-only; thread-safe. Kinds used: start, stop, result, alarm, alarm_ack, config_change,
    model_loaded, patient_set, patient_cleared, store_full, result_recovered, audit_tail_repaired."""

    def __init__(self, path: str | os.PathLike, device_id: str = "", max_bytes: int = 64 * 1024 * 1024):
        self.path = Path(path)
        self.device_id = device_id
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._last_hash, repaired = self._recover_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if repaired:
            self.append("audit_tail_repaired", {"truncated_bytes": repaired})

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
            return entry

    @property
    def last_hash(self) -> str:
        return self._last_hash

    @property
    def seq(self) -> int:
        return self._seq

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


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


def verify_audit_log(path: str | os.PathLike) -> AuditVerification:
    """Walk the chain through every rotated segment and the current file; report the first broken link
    (line numbers are 1-based, per file)."""
    prev, n, problems, kinds = GENESIS, 0, [], {}
    p = Path(path)
    if not p.exists():
        return AuditVerification(False, 0, GENESIS, [f"{p} does not exist"])
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
        if problems:
            break
    return AuditVerification(not problems, n, prev, problems, kinds)
