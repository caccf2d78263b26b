"""Model-rollout cryptography and version order: what the fleet signs and what the device checks.

Why its own module: the digests are a wire contract shared by the device (edge_app.model_store) and the fleet's
admin tools (cloud_dashboard.fleet_cli); the version order is what refuses a replayed old bundle. Nothing here
touches the disk.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

DIGEST_CONTEXT = b"ecg-edge-model-rollout/v1\n"
ROLLBACK_CONTEXT = b"ecg-edge-model-rollback/v1\n"
MAX_ROLLBACK_VALIDITY_S = 7 * 24 * 3600


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signed_digest(model_bytes: bytes, manifest_bytes: bytes, files: dict[str, bytes] | None = None) -> bytes:
    """The 32 bytes the fleet key signs: a domain tag, then sha256 of the model, the manifest and every extra
    file (sorted by name). Signing a digest keeps signatures independent of transport encoding/chunking."""
    h = hashlib.sha256(DIGEST_CONTEXT)
    h.update(b"model:" + sha256_hex(model_bytes).encode() + b"\n")
    h.update(b"manifest:" + sha256_hex(manifest_bytes).encode() + b"\n")
    for name in sorted(files or {}):
        h.update(f"file:{name}:{sha256_hex(files[name])}\n".encode())
    return h.digest()


def rollback_digest(from_version: str, to_version: str, not_after: int) -> bytes:
    """The 32 bytes the fleet key signs to order one rollback: from the running version to the previous one,
    valid until not_after (Unix seconds). Versions are model_version strings as reported in birth/status."""
    h = hashlib.sha256(ROLLBACK_CONTEXT)
    h.update(f"from:{from_version}\nto:{to_version}\nnot_after:{int(not_after)}\n".encode())
    return h.digest()


_VERSION = re.compile(r"^(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\Z")


def version_key(version: str) -> tuple:
    """Sort key for model versions: dotted numbers, then semver pre-release ordering (1.0.0-rc1 < 1.0.0).
    ValueError for a version that cannot be ordered (the device then refuses it: no downgrade check possible)."""
    m = _VERSION.match(str(version))
    if not m:
        raise ValueError(f"model_version {version!r} is not dotted numbers (e.g. 2.1.0 or 2.1.0-rc1), so the "
                         "device cannot tell whether it is a downgrade")
    release = tuple(int(x) for x in m.group(1).split("."))
    release = release + (0,) * (8 - len(release)) if len(release) < 8 else release
    pre = m.group(2)
    if pre is None:
        return release, 1, ()
    return release, 0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def load_public_key(pem: bytes | str):
    """An Ed25519 public key from PEM bytes/text or a path to a PEM file. ValueError if it is anything else."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    if isinstance(pem, str):
        pem = Path(pem).read_bytes() if "-----BEGIN" not in pem else pem.encode()
    key = load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"public key is {type(key).__name__}, expected Ed25519")
    return key


def verify_signature(signature: bytes, digest: bytes, public_key_pem: bytes | str) -> None:
    """Raise ValueError when the signature does not verify."""
    from cryptography.exceptions import InvalidSignature
    key = load_public_key(public_key_pem)
    try:
        key.verify(signature, digest)
    except InvalidSignature:
        raise ValueError("Ed25519 signature does not verify with the configured public key "
                         "(tampered bundle or signed with another key)") from None



def check_rollback_order(from_version: Any, to_version: Any, not_after: Any, signature: bytes,
                          public_key_pem: bytes | str | None, current: str | None, previous: str | None,
                          now: float) -> None:
    """ValueError unless (from, to, not_after) is signed by the fleet key and describes this very swap now."""
    if not public_key_pem:
        raise ValueError("no model_public_key configured to check the rollback order's signature")
    if not signature or not isinstance(from_version, str) or not isinstance(to_version, str) \
            or isinstance(not_after, bool) or not isinstance(not_after, int):
        raise ValueError("a rollback must be a signed order: 'from', 'to' (model versions), 'not_after' (Unix "
                         "seconds) and 'signature_b64' (ecg-fleet sign-rollback makes them)")
    verify_signature(signature, rollback_digest(from_version, to_version, not_after), public_key_pem)
    if from_version != current or to_version != previous:
        raise ValueError(f"the signed order is for {from_version} -> {to_version}, but this device runs {current} "
                         f"and its previous model is {previous}")
    if now > not_after:
        raise ValueError(f"the signed order expired at {int(not_after)} (now {int(now)})")
    if not_after - now > MAX_ROLLBACK_VALIDITY_S:
        raise ValueError(f"the signed order is valid for more than {MAX_ROLLBACK_VALIDITY_S // 86400} days; "
                         "sign one with a shorter validity")
