"""Bounded local store of every result (JSON) and the raw 10 s strip it came from (WFDB record).

Layout under <state_dir>/store/:
  results/<YYYY-MM-DD>/<id>.json     the result (commit point)
  results/<YYYY-MM-DD>/<id>.hea/.dat the raw strip at the native rate, 12 leads, mV (WFDB, 16-bit, 1 uV/LSB)
  index.sqlite                       SQLite (WAL, synchronous=FULL): order, level, delivered flag, bytes
  tmp/                               WFDB files are written here, fsynced, then renamed into place

Why this order (strip -> JSON -> index): the JSON rename (with file and directory fsync) is the commit
point. A SIGKILL before it leaves at most an orphan strip (removed on the next start); after it, the
result exists even if the index row was not yet written: the next start re-indexes it and records a
`result_recovered` audit entry. Nothing committed is lost, and no reader ever sees a half file.

Retention never deletes an undelivered result: when over `max_bytes` only delivered results are removed
(oldest first), plus delivered results older than `retention_days`. If the store is still over its limit
the caller raises a technical alarm (`put` returns full=True) instead of deleting clinical data.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.storage.atomic import atomic_move_into, atomic_write_bytes, fsync_dir
from edge_app.storage.wfdb_strip import read_strip, write_strip
from firmware_bridge.leads import LEADS

log = logging.getLogger(__name__)


@dataclass
class StoredResult:
    id: str
    json_path: Path
    strip_path: Path | None      # WFDB record path without extension
    bytes: int
    full: bool                   # store over max_bytes with nothing deletable (technical alarm)


class ResultStore:
    def __init__(self, state_dir: str | os.PathLike, max_bytes: int = 2 * 1024 ** 3, retention_days: float = 30,
                 keep_strips: bool = True, audit: Any | None = None):
        self.root = Path(state_dir) / "store"
        self.results_dir = self.root / "results"
        self.tmp_dir = self.root / "tmp"
        self.max_bytes = int(max_bytes)
        self.retention_days = float(retention_days)
        self.keep_strips = keep_strips
        self.audit = audit
        self._lock = threading.RLock()
        for d in (self.root, self.results_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS results (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, time TEXT NOT NULL,
            day TEXT NOT NULL, level TEXT, priority TEXT, record TEXT, bytes INTEGER NOT NULL,
            has_strip INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, delivered_at TEXT)""")
        self._db.execute("CREATE INDEX IF NOT EXISTS results_delivered ON results(delivered, seq)")
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
        if "msg_id" not in cols:       # uplink outbox message id, to map PUBACKs back to results
            self._db.execute("ALTER TABLE results ADD COLUMN msg_id TEXT")
        self._db.execute("CREATE INDEX IF NOT EXISTS results_msg ON results(msg_id)")
        self.recovered: list[str] = []
        self._recover()

    # ---- recovery -------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Make the index agree with the committed files after a crash."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        indexed = {r[0]: (r[1], r[2]) for r in self._db.execute("SELECT id, day, delivered FROM results")}
        on_disk: dict[str, Path] = {}
        for day in sorted(self.results_dir.iterdir()) if self.results_dir.exists() else []:
            if not day.is_dir():
                continue
            names = {e.name for e in os.scandir(day)}
            for n in names:
                if n.startswith("."):            # stale temp file from atomic_write_bytes
                    (day / n).unlink(missing_ok=True)
                    continue
                if n.endswith(".json"):
                    on_disk[n[:-5]] = day / n
            for n in names:
                stem, ext = os.path.splitext(n)
                if ext in (".hea", ".dat") and stem not in on_disk:
                    log.warning("store: removing orphan strip %s (its result was never committed)", n)
                    (day / n).unlink(missing_ok=True)
        for rid, p in sorted(on_disk.items(), key=lambda kv: kv[1].stat().st_mtime):
            if rid in indexed:
                continue
            try:
                d = json.loads(p.read_bytes())
            except (OSError, json.JSONDecodeError) as e:   # cannot happen with atomic writes; be loud if it does
                log.error("store: unreadable committed result %s: %s", p, e)
                continue
            self._index(d, p.parent.name, self._bytes_of(p), (p.with_suffix(".dat")).exists())
            self.recovered.append(rid)
            log.warning("store: re-indexed result %s committed just before a crash", rid)
        for rid, (day, delivered) in indexed.items():
            if rid not in on_disk:
                self._db.execute("DELETE FROM results WHERE id=?", (rid,))
                if not delivered:
                    log.error("store: undelivered result %s vanished from disk (outside interference?)", rid)

    def _bytes_of(self, json_path: Path) -> int:
        n = 0
        for ext in (".json", ".hea", ".dat"):
            q = json_path.with_suffix(ext)
            if q.exists():
                n += q.stat().st_size
        return n

    def _index(self, d: dict[str, Any], day: str, nbytes: int, has_strip: bool) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO results (id, time, day, level, priority, record, bytes, has_strip) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (d["id"], d.get("time", ""), day, d.get("triage_level"), d.get("alarm_priority"), d.get("record"),
             nbytes, int(has_strip)))

    # ---- writing --------------------------------------------------------------------------------
    def put(self, result: dict[str, Any], strip_uv: np.ndarray | None = None, fs: float | None = None) -> StoredResult:
        rid = result["id"]
        day = (result.get("time") or datetime.now(timezone.utc).isoformat())[:10]
        with self._lock:
            ddir = self.results_dir / day
            if not ddir.exists():
                ddir.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.results_dir)
            strip_path = None
            result = dict(result)
            if self.keep_strips and strip_uv is not None and len(strip_uv) > 0:
                strip_path = ddir / rid
                self._write_strip(rid, np.asarray(strip_uv, dtype=np.float64), float(fs), ddir)
                result["strip"] = {"format": "WFDB", "record": f"{day}/{rid}", "fs": float(fs),
                                   "units": "mV", "leads": list(LEADS), "n_samples": int(len(strip_uv))}
            json_path = ddir / f"{rid}.json"
            atomic_write_bytes(json_path, json.dumps(result, separators=(",", ":")).encode("utf-8"))
            nbytes = self._bytes_of(json_path)
            self._index(result, day, nbytes, strip_path is not None)
            full = self._enforce_limits()
            return StoredResult(rid, json_path, strip_path, nbytes, full)

    def _write_strip(self, rid: str, uv: np.ndarray, fs: float, ddir: Path) -> None:
        # WFDB format 16 written by our own small writer (byte-identical to wfdb.wrsamp, tested): the wfdb
        # package would pull pandas into the daemon for this one file. Missing samples -> WFDB's -32768.
        tdir = self.tmp_dir / rid
        tdir.mkdir(parents=True, exist_ok=True)
        write_strip(tdir, rid, uv, fs, LEADS, comments=["ecg-edge raw strip; triage aid, not a diagnosis"])
        atomic_move_into(tdir / f"{rid}.dat", ddir / f"{rid}.dat")
        atomic_move_into(tdir / f"{rid}.hea", ddir / f"{rid}.hea")
        fsync_dir(ddir)
        shutil.rmtree(tdir, ignore_errors=True)

    def _enforce_limits(self) -> bool:
        """Delete delivered results past retention or over the size limit; True if still over (full)."""
        total = self.total_bytes()
        if self.retention_days > 0:
            cutoff = (datetime.now(timezone.utc) - timedelta(days=self.retention_days)).isoformat()
            for rid, day, _b in self._db.execute(
                    "SELECT id, day, bytes FROM results WHERE delivered=1 AND time < ? ORDER BY seq",
                    (cutoff,)).fetchall():
                total -= self._delete(rid, day)
        if total <= self.max_bytes:
            return False
        for rid, day, _b in self._db.execute(
                "SELECT id, day, bytes FROM results WHERE delivered=1 ORDER BY seq").fetchall():
            if total <= self.max_bytes:
                break
            total -= self._delete(rid, day)
        return total > self.max_bytes

    def _delete(self, rid: str, day: str) -> int:
        ddir = self.results_dir / day
        freed = 0
        for ext in (".json", ".dat", ".hea"):         # JSON first: a crash leaves an orphan strip, not a result
            p = ddir / f"{rid}{ext}"
            if p.exists():
                freed += p.stat().st_size
                p.unlink()
        fsync_dir(ddir)
        self._db.execute("DELETE FROM results WHERE id=?", (rid,))
        return freed

    def mark_delivered(self, rid: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE results SET delivered=1, delivered_at=? WHERE id=? AND delivered=0",
                                   (datetime.now(timezone.utc).isoformat(), rid))
            return cur.rowcount > 0

    def set_msg_id(self, rid: str, msg_id: str) -> None:
        """Remember which uplink message carries this result (so its delivery can be recorded)."""
        with self._lock:
            self._db.execute("UPDATE results SET msg_id=? WHERE id=?", (msg_id, rid))

    def mark_delivered_msg(self, msg_id: str) -> str | None:
        """The uplink confirmed message `msg_id`; mark its result delivered. Returns the result id."""
        with self._lock:
            row = self._db.execute("SELECT id FROM results WHERE msg_id=?", (msg_id,)).fetchone()
            if row is None:
                return None
            self.mark_delivered(row[0])
            return row[0]

    def unqueued(self) -> list[dict[str, Any]]:
        """Undelivered results never handed to the uplink (crash between store and outbox), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, day FROM results WHERE delivered=0 AND msg_id IS NULL "
                                    "ORDER BY seq").fetchall()
        return [self._load(rid, day) for rid, day in rows]

    # ---- reading --------------------------------------------------------------------------------
    def total_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(bytes),0) FROM results").fetchone()[0])

    def _load(self, rid: str, day: str) -> dict[str, Any]:
        d = json.loads((self.results_dir / day / f"{rid}.json").read_bytes())
        return d

    def get(self, rid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT day, delivered FROM results WHERE id=?", (rid,)).fetchone()
        if row is None:
            return None
        d = self._load(rid, row[0])
        d["delivered"] = bool(row[1])
        return d

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM results ORDER BY seq")]

    def latest(self, n: int = 10) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, day, delivered FROM results ORDER BY seq DESC LIMIT ?",
                                    (int(n),)).fetchall()
        out = []
        for rid, day, delivered in rows:
            d = self._load(rid, day)
            d["delivered"] = bool(delivered)
            out.append(d)
        return out

    def undelivered(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, day FROM results WHERE delivered=0 ORDER BY seq LIMIT ?",
                                    (int(limit),)).fetchall()
        return [self._load(rid, day) for rid, day in rows]

    def strip(self, rid: str) -> tuple[np.ndarray, float]:
        """The raw strip of a stored result: ((n, 12) microvolts, NaN = missing, fs)."""
        with self._lock:
            row = self._db.execute("SELECT day FROM results WHERE id=?", (rid,)).fetchone()
        if row is None:
            raise KeyError(rid)
        uv, fs, _ = read_strip(self.results_dir / row[0] / rid)
        return uv, fs

    def stats(self) -> dict[str, Any]:
        with self._lock:
            n, nbytes, und = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes),0), COALESCE(SUM(delivered=0),0) FROM results").fetchone()
        return {"results": int(n), "bytes": int(nbytes), "undelivered": int(und), "max_bytes": self.max_bytes,
                "full": int(nbytes) > self.max_bytes}

    def verify(self) -> list[str]:
        """Check every indexed result: JSON parses, id matches, strip (if any) is readable. [] = all good."""
        problems = []
        with self._lock:
            rows = self._db.execute("SELECT id, day, has_strip FROM results ORDER BY seq").fetchall()
        for rid, day, has_strip in rows:
            p = self.results_dir / day / f"{rid}.json"
            try:
                d = json.loads(p.read_bytes())
                if d.get("id") != rid:
                    problems.append(f"{p}: id mismatch")
            except (OSError, json.JSONDecodeError) as e:
                problems.append(f"{p}: {e}")
                continue
            if has_strip:
                try:
                    uv, _, _ = read_strip(self.results_dir / day / rid)
                    if uv.shape[1] != 12:
                        problems.append(f"{rid}: strip has {uv.shape[1]} leads")
                except Exception as e:  # noqa: BLE001 - any read failure is a problem to report
                    problems.append(f"{rid}: strip unreadable: {e}")
        return problems

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(FULL)")
            finally:
                self._db.close()
