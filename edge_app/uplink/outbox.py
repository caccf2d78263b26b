"""Durable store-and-forward queue for clinical results and alarms.

Why SQLite in WAL mode with synchronous=FULL: an ambulance loses power and links without warning, and a
clinic may be offline for days. A result is acknowledged to the pipeline only after its row is fsync'd;
it leaves the queue only after the broker's PUBACK. Order is priority first (a suspected infarct before
routine results), then arrival. The queue never deletes undelivered rows to make room: when the disk
budget is spent it refuses new messages (OutboxFull) so the daemon raises a technical alarm instead. A write
the disk itself fails (I/O error, disk full below SQLite, read-only remount) is OutboxWriteError: also a
refusal with nothing queued and nothing already queued lost, also a technical alarm (issue 14 item 6).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from edge_app.jsonsafe import json_safe  # the one converter: NaN/inf -> null, unknown types raise

#: Lower rank leaves first. "technical" is an alias of "none" (technical alarms carry no clinical urgency
#: of their own but must not starve either: they are still delivered in arrival order within their rank).
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2, "none": 3}
PRIORITY_ALIASES = {"technical": "none", "critical": "high"}
RANK_NAME = {v: k for k, v in PRIORITY_RANK.items()}

#: Fraction of the byte budget reserved for "high" priority rows, so routine traffic filling the disk
#: during a long outage can never block a suspected-MI result.
HIGH_RESERVE_FRACTION = 0.10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id     TEXT NOT NULL UNIQUE,
    rank       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    created    REAL NOT NULL,
    offline    INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
    body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (rank, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxRefused(RuntimeError):
    """The outbox did not queue a message. Nothing was deleted; the caller keeps its copy and retries later."""

    alarm_code = "outbox_refused"


class OutboxFull(OutboxRefused):
    """The outbox refused a message: its byte budget or the disk's free space is spent. Nothing was deleted."""

    alarm_code = "outbox_full"

    def __init__(self, reason: str, depth: int, used_bytes: int):
        self.reason, self.depth, self.used_bytes = reason, depth, used_bytes
        super().__init__(f"outbox full: {reason} (depth {depth}, {used_bytes} bytes queued)")


class OutboxWriteError(OutboxRefused):
    """The disk failed the write (sqlite3.OperationalError: disk I/O error, database or disk is full, ...; or a
    file that went bad while running: sqlite3.DatabaseError "database disk image is malformed").
    The transaction was rolled back: nothing queued, nothing already queued lost."""

    alarm_code = "outbox_write_failed"

    def __init__(self, path: str, cause: BaseException, depth: int):
        self.path, self.cause, self.depth = path, cause, depth
        super().__init__(f"outbox write failed on {path}: {cause} (depth {depth} kept; check the disk)")


def normalise_priority(priority: str) -> str:
    """Map a caller's priority (case-insensitive, aliases allowed) to one of PRIORITY_RANK, or ValueError."""
    p = str(priority).strip().lower()
    p = PRIORITY_ALIASES.get(p, p)
    if p not in PRIORITY_RANK:
        raise ValueError(f"unknown priority {priority!r}; use one of high, medium, low, none/technical")
    return p


@dataclass(frozen=True)
class QueuedMessage:
    """One row as the sender sees it."""

    seq: int
    msg_id: str
    priority: str
    kind: str  # "triage", "alarm", "event" or "strip": the topic leaf it is published on
    created: float  # wall-clock seconds when queued
    offline: bool  # queued while the link was down
    attempts: int
    body: dict[str, Any]


class Outbox:
    """Thread-safe durable queue. One instance per database file per process."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = 512 * 1024 * 1024,
                 min_free_bytes: int = 64 * 1024 * 1024):
        self.path = os.fspath(path)
        self.max_bytes = int(max_bytes)
        self.min_free_bytes = int(min_free_bytes)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._dir = parent
        self._lock = threading.RLock()
        self.refused = 0
        #: set when an unreadable outbox file was moved aside at startup (kept for export, never deleted)
        self.quarantined: str | None = None
        self.quarantine_reason: str | None = None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            # A corrupt file (torn write on a bad SD card, wrong file) must not stop results from being queued.
            stamp = time.strftime("%Y%m%dT%H%M%S")
            self.quarantined = f"{self.path}.corrupt-{stamp}"
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, self.quarantined + suffix)
            self.quarantine_reason = str(exc)
            self._open()

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM messages").fetchone()
        except sqlite3.DatabaseError:
            self._db.close()
            raise
        self._depth, self._bytes = int(row[0]), int(row[1])

    # ---- writing -------------------------------------------------------------------------------------
    def put(self, kind: str, body: dict[str, Any], priority: str, offline: bool = False,
            msg_id: str | None = None, created: float | None = None) -> str:
        """Queue one message durably; return its msg_id only after the row is fsync'd.

        Raises OutboxFull / OutboxWriteError (nothing deleted, nothing queued) or ValueError for a bad
        priority/kind/body.
        """
        if kind not in ("triage", "alarm", "event", "strip"):
            raise ValueError(f"unknown message kind {kind!r}")
        p = normalise_priority(priority)
        rank = PRIORITY_RANK[p]
        msg_id = msg_id or uuid.uuid4().hex
        created = time.time() if created is None else float(created)
        blob = json.dumps(json_safe(body), separators=(",", ":"), allow_nan=False).encode("utf-8")
        with self._lock:
            self._check_room(len(blob), rank)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO messages (msg_id, rank, kind, created, offline, body) VALUES (?,?,?,?,?,?)",
                    (msg_id, rank, kind, created, 1 if offline else 0, blob))
                self._db.execute("COMMIT")  # synchronous=FULL: the WAL is fsync'd before COMMIT returns
            except BaseException as exc:
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass                # SQLite rolls a failed transaction back itself on the next open
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                    self.refused += 1
                    raise OutboxWriteError(self.path, exc, self._depth) from exc
                raise
            self._depth += 1
            self._bytes += len(blob)
        return msg_id

    def _check_room(self, size: int, rank: int) -> None:
        budget = self.max_bytes if rank == 0 else int(self.max_bytes * (1 - HIGH_RESERVE_FRACTION))
        if self._bytes + size > budget:
            self.refused += 1
            raise OutboxFull(f"byte budget {budget} reached" + (" (the last 10% is reserved for high priority)"
                                                                  if rank else ""), self._depth, self._bytes)
        try:
            free = shutil.disk_usage(self._dir).free
        except OSError:
            return
        floor = self.min_free_bytes if rank else self.min_free_bytes // 2
        if free - size < floor:
            self.refused += 1
            raise OutboxFull(f"only {free} bytes free on the outbox disk (floor {floor})", self._depth, self._bytes)

    def remove(self, seqs: Iterable[int]) -> int:
        """Delete delivered rows (after PUBACK). One transaction for the batch; returns rows removed.

        A crash before this commit only means the row is sent again; receivers drop it by msg_id.
        """
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._lock:
            removed = freed = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for s in seqs:
                    row = self._db.execute("DELETE FROM messages WHERE seq = ? RETURNING length(body)",
                                           (s,)).fetchone()
                    if row is not None:
                        removed += 1
                        freed += int(row[0])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= removed
            self._bytes -= freed
        return removed

    def mark_attempt(self, seq: int) -> None:
        """Count a publish attempt (not fsync-critical: it is a diagnostic)."""
        with self._lock:
            self._db.execute("UPDATE messages SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    # ---- reading -------------------------------------------------------------------------------------
    def next_batch(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[QueuedMessage]:
        """The next messages to send in delivery order, skipping those already in flight."""
        out: list[QueuedMessage] = []
        if limit <= 0:
            return out
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, msg_id, rank, kind, created, offline, attempts, body FROM messages "
                "ORDER BY rank, seq LIMIT ?", (limit + len(exclude),))
            for seq, msg_id, rank, kind, created, offline, attempts, body in cur:
                if seq in exclude:
                    continue
                out.append(QueuedMessage(seq, msg_id, RANK_NAME[rank], kind, created, bool(offline), attempts,
                                         json.loads(body)))
                if len(out) >= limit:
                    break
        return out

    def depth(self) -> int:
        return self._depth

    def used_bytes(self) -> int:
        return self._bytes

    def summary(self) -> dict[str, Any]:
        """Depth, bytes, oldest message and per-priority counts (for telemetry and `ecg-edge outbox`)."""
        with self._lock:
            out = _summarise(self._db, self.path)
        out.update(max_bytes=self.max_bytes, refused=self.refused)
        return out

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._db.close()


def open_readonly_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of an outbox file without taking part in its writes (for the CLI while the daemon runs)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return _summarise(db, path)
    finally:
        db.close()


def _summarise(db: sqlite3.Connection, path: str) -> dict[str, Any]:
    rows = db.execute(
        "SELECT rank, COUNT(*), MIN(created), COALESCE(SUM(length(body)), 0) FROM messages GROUP BY rank").fetchall()
    oldest_row = db.execute("SELECT msg_id, rank, kind, created FROM messages ORDER BY created LIMIT 1").fetchone()
    by_priority = {name: {"count": 0, "oldest": None, "bytes": 0} for name in PRIORITY_RANK}
    for rank, count, oldest, nbytes in rows:
        by_priority[RANK_NAME[rank]] = {"count": int(count), "oldest": oldest, "bytes": int(nbytes)}
    oldest = None
    if oldest_row:
        oldest = {"msg_id": oldest_row[0], "priority": RANK_NAME[oldest_row[1]], "kind": oldest_row[2],
                  "created": oldest_row[3], "age_s": round(max(0.0, time.time() - oldest_row[3]), 1)}
    return {"path": path, "depth": sum(v["count"] for v in by_priority.values()),
            "bytes": sum(v["bytes"] for v in by_priority.values()), "oldest": oldest, "by_priority": by_priority}
