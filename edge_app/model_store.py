"""Staged model installs with an atomic swap and one-step rollback.

Why: a fleet admin pushes a new model over MQTT to devices in ambulances. A model that is tampered with,
corrupt, or does not reproduce its golden outputs on this device must never replace the running one. So:
  1. the bundle (model file, manifest, and any other files the manifest names, e.g. the Grad-CAM head) is
     checked against an Ed25519 signature made by the fleet's private key over `signed_digest(...)`;
  2. every file's sha256 must equal the one written in the manifest;
  3. the bundle is written (fsync'd) into state_dir/models/<version>/ and the device self-test
     (edge_app.inference.selftest.run_selftest) must pass on the STAGED copy;
  4. only then the pointer file state_dir/models/current.json is replaced atomically (write temp + fsync +
     os.replace + fsync of the directory). A power cut at any point leaves either the old or the new pointer.
The previous model stays on disk for rollback(). Anything failing leaves the running model untouched and
the returned report says which step refused it and why.

Downgrades (issue 14): a validly signed OLD bundle, replayed, must not roll a fleet back to a model with a known
defect. install() therefore only accepts a version strictly newer (dotted-number order, semver pre-release
rules) than the highest version this device has ever run (`highest` in the pointer; without one, the highest of
the shipped, current and previous manifests). Going back is possible only by rollback(), and only with an
Ed25519 signature over rollback_digest(from, to, not_after): an explicit order for this very swap, valid until
not_after (at most MAX_ROLLBACK_VALIDITY_S ahead) and useless once the device is no longer at `from`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from edge_app.model_signing import (DIGEST_CONTEXT, MAX_ROLLBACK_VALIDITY_S, ROLLBACK_CONTEXT,  # noqa: F401
                                    check_rollback_order, load_public_key, rollback_digest, sha256_hex,
                                    signed_digest, verify_signature, version_key)

log = logging.getLogger(__name__)

POINTER = "current.json"
SHIPPED = "shipped"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,95}\Z")     # \Z: "$" would accept a trailing newline


def bundle_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Files a manifest names, mapped to their expected sha256: the model, plus the Grad-CAM head if present."""
    out = {str(manifest["model_file"]): str(manifest["model_sha256"])}
    cam = manifest.get("gradcam")
    if isinstance(cam, dict) and "file" in cam:
        out[str(cam["file"])] = str(cam.get("sha256", ""))
    return out


def _default_selftest(manifest_path: str) -> Any:
    from edge_app.inference.selftest import run_selftest
    return run_selftest(manifest_path)


def _selftest_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    elif isinstance(result, bool):
        result = {"ok": result}
    if not isinstance(result, dict):
        return {"ok": False, "error": f"self-test returned {type(result).__name__}"}
    out = dict(result)
    out["ok"] = bool(out.get("ok", False))
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class ModelStore:
    """Installed models under state_dir/models/, falling back to the shipped manifest."""

    def __init__(self, state_dir: str | os.PathLike, shipped_manifest_path: str | os.PathLike,
                 on_change: Callable[[str], None] | None = None,
                 selftest: Callable[[str], Any] | None = None, max_bundle_bytes: int = 64 * 1024 * 1024):
        self.models_dir = Path(state_dir) / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.shipped_manifest_path = Path(shipped_manifest_path)
        self.on_change = on_change
        self.selftest = selftest or _default_selftest
        self.max_bundle_bytes = max_bundle_bytes
        self._lock = threading.Lock()
        self._cleanup_staging()

    # ---- reading -------------------------------------------------------------------------------------
    def _pointer(self) -> dict[str, Any]:
        p = self.models_dir / POINTER
        try:
            doc = json.loads(p.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("current"), str):
                return doc
            log.error("model pointer %s malformed; using the shipped model", p)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error("model pointer %s unreadable (%s); using the shipped model", p, exc)
        return {"current": SHIPPED, "previous": None}

    def _manifest_of(self, name: str | None) -> Path | None:
        if not name:
            return None
        if name == SHIPPED:
            return self.shipped_manifest_path
        return self.models_dir / name / "manifest.json"

    def version_of(self, name: str | None) -> str | None:
        """model_version of an installed name or of the shipped model (None when unreadable)."""
        path = self._manifest_of(name)
        try:
            return str(json.loads(path.read_text())["model_version"]) if path else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def highest_version(self, ptr: dict[str, Any] | None = None) -> str | None:
        """The highest version this device has run: installs must be newer than this."""
        ptr = ptr or self._pointer()
        seen = [ptr.get("highest"), self.version_of(SHIPPED), self.version_of(ptr.get("current")),
                self.version_of(ptr.get("previous"))]
        seen += [self.version_of(d.name) for d in self.models_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        best = None
        for v in seen:
            try:
                if v is not None and (best is None or version_key(v) > version_key(best)):
                    best = str(v)
            except ValueError:
                continue
        return best

    def active_manifest_path(self) -> str:
        """Manifest the daemon should load: the installed current model, or the shipped one."""
        ptr = self._pointer()
        path = self._manifest_of(ptr["current"])
        if path is None or not path.exists():
            if ptr["current"] != SHIPPED:
                log.error("installed model %s is missing; falling back to the shipped model", ptr["current"])
            return str(self.shipped_manifest_path)
        return str(path)

    def active_info(self) -> dict[str, Any]:
        """For the birth message and status: version, sha256 and origin of the running model."""
        ptr = self._pointer()
        path = Path(self.active_manifest_path())
        info: dict[str, Any] = {"source": SHIPPED if path == self.shipped_manifest_path else "installed",
                                "manifest": str(path), "previous": ptr.get("previous")}
        try:
            m = json.loads(path.read_text())
            info.update(version=m.get("model_version"), model_sha256=m.get("model_sha256"),
                        model_file=m.get("model_file"))
        except (OSError, ValueError) as exc:
            info["error"] = f"manifest unreadable: {exc}"
        return info

    # ---- install ----------------------------------------------------------------------------------------
    def install(self, model_bytes: bytes, manifest_bytes: bytes, signature: bytes, public_key_pem: bytes | str,
                files: dict[str, bytes] | None = None) -> dict[str, Any]:
        """Verify, stage, self-test and atomically activate a model bundle. Never raises for a bad bundle:
        returns {"ok": False, "stage": ..., "reason": ...} and leaves the running model untouched."""
        with self._lock:
            t0 = time.monotonic()
            report: dict[str, Any] = {"ok": False, "previous": self._pointer()["current"]}
            files = dict(files or {})
            stage = "size"
            staging: Path | None = None
            try:
                total = len(model_bytes) + len(manifest_bytes) + sum(len(b) for b in files.values())
                if total > self.max_bundle_bytes:
                    raise ValueError(f"bundle of {total} bytes exceeds {self.max_bundle_bytes}")
                stage = "signature"
                verify_signature(signature, signed_digest(model_bytes, manifest_bytes, files), public_key_pem)
                stage = "manifest"
                manifest = json.loads(manifest_bytes.decode("utf-8"))
                if not isinstance(manifest, dict):
                    raise ValueError("manifest is not a JSON object")
                for key in ("model_file", "model_sha256", "model_version"):
                    if key not in manifest:
                        raise ValueError(f"manifest lacks {key!r}")
                version = str(manifest["model_version"])
                if not _NAME.match(version) or version in (SHIPPED, POINTER):
                    raise ValueError(f"model_version {version!r} is not a safe directory name")
                report["version"] = version
                expected = bundle_files(manifest)
                content = {str(manifest["model_file"]): model_bytes, **files}
                for name in list(expected) + list(content):
                    if not _NAME.match(name) or name == "manifest.json":
                        raise ValueError(f"file name {name!r} in the bundle is not a plain file name")
                if set(content) != set(expected):
                    raise ValueError(f"bundle files {sorted(content)} differ from those the manifest names "
                                     f"{sorted(expected)}")
                stage = "hash"
                for name, want in expected.items():
                    got = sha256_hex(content[name])
                    if got != want:
                        raise ValueError(f"sha256 of {name} is {got[:16]}..., manifest says {want[:16]}...")
                report["model_sha256"] = expected[str(manifest["model_file"])]
                ptr = self._pointer()
                if version == ptr["current"]:
                    raise ValueError(f"model version {version} is already the running model")
                stage = "version"
                highest = self.highest_version(ptr)
                if highest is not None and version_key(version) <= version_key(highest):
                    raise ValueError(f"model version {version} is not newer than {highest}, the highest this "
                                     "device has run: a downgrade is refused (use a signed model/rollback to go "
                                     "back to the previous model)")
                stage = "stage"
                free = shutil.disk_usage(self.models_dir).free
                if free < 2 * total + 16 * 1024 * 1024:
                    raise ValueError(f"only {free} bytes free for a {total} byte bundle")
                staging = self.models_dir / f".staging-{uuid.uuid4().hex}"
                staging.mkdir()
                for name, data in content.items():
                    _write_durable(staging / name, data)
                _write_durable(staging / "manifest.json", manifest_bytes)
                _fsync_dir(staging)
                stage = "selftest"
                st = _selftest_dict(self.selftest(str(staging / "manifest.json")))
                report["selftest"] = st
                if not st["ok"]:
                    raise ValueError(f"self-test failed: {st.get('error') or 'golden outputs not reproduced'}")
                stage = "activate"
                final = self.models_dir / version
                if final.exists():  # an older copy of this version that is not running: replace it
                    shutil.rmtree(final)
                os.replace(staging, final)
                staging = None
                _fsync_dir(self.models_dir)
                self._write_pointer({"current": version, "previous": ptr["current"], "installed_at": time.time(),
                                     "highest": version})
                self._prune({version, ptr["current"]})
            except Exception as exc:
                report.update(stage=stage, reason=f"{stage}: {exc}" if not str(exc).startswith(stage) else str(exc))
                log.warning("model install refused at %s: %s", stage, exc)
                return report
            finally:
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                report["seconds"] = round(time.monotonic() - t0, 3)
            report.update(ok=True, stage="done", active=self.active_info())
            log.info("model %s installed and active (previous %s)", version, report["previous"])
        self._notify()
        return report

    def rollback(self, from_version: Any = None, to_version: Any = None, not_after: Any = None,
                 signature: bytes = b"", public_key_pem: bytes | str | None = None,
                 now: float | None = None) -> dict[str, Any]:
        """Swap back to the previous model (shipped or installed), on a signed order only: the fleet key's
        signature over rollback_digest(from_version, to_version, not_after), where from/to are the running and
        the previous model_version. Checks the previous model's file hashes before swapping."""
        with self._lock:
            ptr = self._pointer()
            prev = ptr.get("previous")
            report: dict[str, Any] = {"ok": False, "from": ptr["current"], "to": prev}
            path = self._manifest_of(prev)
            if path is None:
                report["reason"] = "no previous model to roll back to"
                return report
            current_v, prev_v = self.version_of(ptr["current"]), self.version_of(prev)
            report.update(from_version=current_v, to_version=prev_v)
            try:
                check_rollback_order(from_version, to_version, not_after, signature, public_key_pem,
                                      current_v, prev_v, time.time() if now is None else now)
            except ValueError as exc:
                report["reason"] = f"rollback refused: {exc}"
                log.warning("%s", report["reason"])
                return report
            if not path.exists():
                report["reason"] = f"previous model {prev} is no longer on disk ({path})"
                return report
            try:
                m = json.loads(path.read_text())
                for name, want in bundle_files(m).items():
                    got = sha256_hex((path.parent / name).read_bytes())
                    if got != want:
                        raise ValueError(f"{name} sha256 {got[:16]}... != manifest {want[:16]}...")
            except Exception as exc:
                report["reason"] = f"previous model {prev} failed its integrity check: {exc}"
                return report
            self._write_pointer({"current": prev, "previous": ptr["current"], "rolled_back_at": time.time(),
                                 "highest": self.highest_version(ptr)})
            report.update(ok=True, active=self.active_info())
            log.info("model rolled back from %s to %s", ptr["current"], prev)
        self._notify()
        return report

    # ---- internals ---------------------------------------------------------------------------------------
    def _write_pointer(self, doc: dict[str, Any]) -> None:
        tmp = self.models_dir / f".{POINTER}.{uuid.uuid4().hex}.tmp"
        _write_durable(tmp, json.dumps(doc, indent=1).encode())
        os.replace(tmp, self.models_dir / POINTER)
        _fsync_dir(self.models_dir)

    def _prune(self, keep: set[str]) -> None:
        for child in self.models_dir.iterdir():
            if child.is_dir() and not child.name.startswith(".") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)

    def _cleanup_staging(self) -> None:
        for child in self.models_dir.glob(".staging-*"):
            shutil.rmtree(child, ignore_errors=True)
        for child in self.models_dir.glob(f".{POINTER}.*.tmp"):
            child.unlink(missing_ok=True)

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self.active_manifest_path())
        except Exception:
            log.exception("model on_change callback failed")
