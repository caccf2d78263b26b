"""The audit chain's anchor: its head (seq, hash) kept OUTSIDE the log, authenticated with a device key.

Why: a hash chain alone proves only that the lines agree with each other. Cutting off the end, or editing a
line and recomputing every later hash, leaves a chain that verifies. The anchor records the last entry the
device wrote, in a separate file, with an HMAC-SHA256 under a device key that is not in the log:
  - the log ending before the anchored seq            -> the end was cut;
  - a different hash at the anchored seq               -> a line was edited and the chain recomputed;
  - more than one entry after the anchor               -> entries were appended by someone else (a crash can
                                                          leave at most one: the log is fsync'd before the anchor).
The same head (seq, hash) is also what the device reports in its telemetry (`audit_head`), so a copy held off
the device (the fleet dashboard) can be checked with `ecg-edge audit verify --head SEQ:HASH`.

File format: two fixed 256-byte slots written alternately in place (slot = seq % 2) with one fsync each, so a
torn write can destroy at most the slot being written, never the other one. Each slot is one JSON line
{"v":1,"seq":N,"hash":H,"mac":M} padded with spaces; M = HMAC-SHA256(key, "ecg-edge-audit-anchor/v1\\n"
seq "\\n" hash "\\n"). The key is 32 random bytes in <log dir>/keys/audit-anchor.key (0600).

Limit: whoever can read the key (root on the device, or the SD card in hand) can rewrite log, chain and anchor
consistently; only a head published before the tampering (telemetry, or any copy kept elsewhere) exposes that.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge_app.storage.atomic import fsync_dir

CONTEXT = b"ecg-edge-audit-anchor/v1\n"
SLOT = 256
KEY_BYTES = 32


class AnchorError(Exception):
    """The anchor or its key is missing, unreadable or not authentic (message says which)."""


@dataclass(frozen=True)
class AnchorHead:
    seq: int
    hash: str


def anchor_path(log_path: str | os.PathLike) -> Path:
    p = Path(log_path)
    return p.with_name(p.name + ".anchor")


def key_path(log_path: str | os.PathLike) -> Path:
    return Path(log_path).parent / "keys" / "audit-anchor.key"


def _mac(key: bytes, seq: int, h: str) -> str:
    return hmac.new(key, CONTEXT + f"{seq}\n{h}\n".encode(), hashlib.sha256).hexdigest()


def load_key(path: Path, create: bool = False) -> bytes:
    """The device's anchor key; with create=True a new one is made (0600, fsync'd) when none exists."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise AnchorError(f"anchor key {path} is missing: the anchor cannot be authenticated") from None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = os.urandom(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return key
    if len(key) != KEY_BYTES:
        raise AnchorError(f"anchor key {path} is {len(key)} bytes, expected {KEY_BYTES}")
    return key


def read_anchor(path: Path, key: bytes) -> AnchorHead | None:
    """The newest authentic slot, None when the file holds no slot yet; AnchorError when slots are present but
    none is authentic (forged, or written under another key)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    best: AnchorHead | None = None
    seen = 0
    for i in range(2):
        raw = data[i * SLOT:(i + 1) * SLOT].strip()
        if not raw:
            continue
        seen += 1
        try:
            d = json.loads(raw)
            seq, h, mac = int(d["seq"]), str(d["hash"]), str(d["mac"])
        except (ValueError, KeyError, TypeError):
            continue
        if hmac.compare_digest(mac, _mac(key, seq, h)) and (best is None or seq > best.seq):
            best = AnchorHead(seq, h)
    if seen and best is None:
        raise AnchorError(f"anchor {path} holds no authentic head (forged, or written under another key)")
    return best


class AnchorWriter:
    """Keeps the anchor of one audit log current: update() after every fsync'd append."""

    def __init__(self, log_path: str | os.PathLike):
        self.path = anchor_path(log_path)
        self.key_existed = key_path(log_path).exists()
        self.key = load_key(key_path(log_path), create=True)
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        if not existed:
            os.fsync(self._fd)
            fsync_dir(self.path.parent)

    def read(self) -> AnchorHead | None:
        return read_anchor(self.path, self.key)

    @staticmethod
    def _slot(key: bytes, seq: int, h: str) -> bytes:
        line = json.dumps({"v": 1, "seq": seq, "hash": h, "mac": _mac(key, seq, h)}, separators=(",", ":"))
        return line.ljust(SLOT - 1).encode() + b"\n"

    def update(self, seq: int, h: str) -> None:
        os.pwrite(self._fd, self._slot(self.key, seq, h), (seq % 2) * SLOT)
        os.fsync(self._fd)

    def reset(self, seq: int, h: str) -> None:
        """Both slots to this head (after the log was found shorter than the anchor: the finding is audited)."""
        empty = b" " * (SLOT - 1) + b"\n"
        slots = [empty, empty]
        slots[seq % 2] = self._slot(self.key, seq, h)
        os.pwrite(self._fd, b"".join(slots), 0)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
