"""Word back from the receiving station, kept beside the results: receipts ("stored by <station> at <time>")
and clinicians' reviews (docs/mqtt.md, `ecg.receipt/1`, `ecg.review/1`).

Why a table of its own and not a field in the result's JSON: the result file is the committed record of
what the device concluded (the audit log holds its SHA-256); what a hospital later says about it is a
separate, later fact. It is appended here, keyed by result id, and never rewrites the result.

Why SQLite (WAL, synchronous=FULL) under <state_dir>/store/feedback.sqlite: a review is clinical
information the crew acts on, so it must survive a power cut the moment it is acknowledged, and repeats
(QoS 1 is at-least-once; the station re-sends on reconnect) must be no-ops: receipts are keyed by msg_id,
reviews by review_id.
"""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    msg_id TEXT PRIMARY KEY, result_id TEXT, kind TEXT, station TEXT NOT NULL, stored_at TEXT NOT NULL,
    receipt_id TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS receipts_result ON receipts(result_id);
CREATE TABLE IF NOT EXISTS reviews (
    review_id TEXT PRIMARY KEY, result_id TEXT NOT NULL, verdict TEXT NOT NULL, text TEXT,
    reviewer TEXT NOT NULL, reviewed_at TEXT NOT NULL, station TEXT NOT NULL, received_at TEXT NOT NULL,
    seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS reviews_result ON reviews(result_id, seq);
"""
REVIEW_FIELDS = ("review_id", "result_id", "verdict", "text", "reviewer", "reviewed_at", "station", "received_at")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FeedbackStore:
    """Thread-safe. `add_receipt` / `add_review` record the word back; `receipts` / `reviews` read it per result."""

    def __init__(self, state_dir: str | Path):
        root = Path(state_dir) / "store"
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "feedback.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    # ---- writing --------------------------------------------------------------------------------
    def add_receipt(self, receipt: dict[str, Any], known: dict[str, tuple[str, str | None]]) -> list[str]:
        """Record a validated receipt for the msg_ids in `known` ({msg_id: (result_id, kind)}: the caller
        checked they are this device's). Returns the msg_ids newly recorded (a repeated receipt returns [])."""
        new: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for msg_id, (rid, kind) in known.items():
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO receipts (msg_id, result_id, kind, station, stored_at, receipt_id, "
                        "received_at) VALUES (?,?,?,?,?,?,?)",
                        (msg_id, rid, kind, receipt["station"], receipt["stored_at"], receipt["receipt_id"], _now()))
                    if cur.rowcount:
                        new.append(msg_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def has_receipt(self, msg_ids: list[str]) -> set[str]:
        """Those of msg_ids already recorded (read-only: a re-sent receipt costs no write)."""
        with self._lock:
            marks = ",".join("?" * len(msg_ids))
            return {r[0] for r in self._db.execute(f"SELECT msg_id FROM receipts WHERE msg_id IN ({marks})",
                                                   list(msg_ids))}

    def add_review(self, review: dict[str, Any]) -> bool:
        """Record a validated review; False when this review_id is already stored (a repeat)."""
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM reviews").fetchone()[0]
            cur = self._db.execute(
                "INSERT OR IGNORE INTO reviews (review_id, result_id, verdict, text, reviewer, reviewed_at, station, "
                "received_at, seq) VALUES (?,?,?,?,?,?,?,?,?)",
                (review["review_id"], review["result_id"], review["verdict"], review.get("text"),
                 review["reviewer"], review["reviewed_at"], review["station"], _now(), seq))
            return cur.rowcount > 0

    # ---- reading --------------------------------------------------------------------------------
    def receipts(self, result_id: str) -> list[dict[str, Any]]:
        """Receipts of a result's messages, earliest stored first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT msg_id, kind, station, stored_at, receipt_id, received_at FROM receipts WHERE result_id=? "
                "ORDER BY stored_at", (result_id,)).fetchall()
        return [dict(zip(("msg_id", "kind", "station", "stored_at", "receipt_id", "received_at"), r)) for r in rows]

    def reviews(self, result_id: str) -> list[dict[str, Any]]:
        """Reviews of a result in the order they arrived (the last one is the current word)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(REVIEW_FIELDS)} FROM reviews WHERE result_id=? ORDER BY seq",
                                    (result_id,)).fetchall()
        return [dict(zip(REVIEW_FIELDS, r)) for r in rows]

    def latest_review(self) -> dict[str, Any] | None:
        """The newest review received, whichever result (the page shows it after a restart too)."""
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(REVIEW_FIELDS)} FROM reviews ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
        return None if row is None else dict(zip(REVIEW_FIELDS, row))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in ("receipts", "reviews")}

    def prune(self, keep_result_ids: set[str]) -> int:
        """Drop rows of results the result store no longer holds (its retention deleted them)."""
        with self._lock:
            ids = {r[0] for r in self._db.execute(
                "SELECT result_id FROM receipts WHERE result_id IS NOT NULL UNION SELECT result_id FROM reviews")}
            gone = sorted(ids - set(keep_result_ids))
            for rid in gone:
                for table in ("receipts", "reviews"):
                    self._db.execute(f"DELETE FROM {table} WHERE result_id=?", (rid,))
            return len(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()
