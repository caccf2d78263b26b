"""The model the device runs now, and its hot swap when a signed model is installed or rolled back.

Why a unit of its own: models installed over MQTT (signed, verified and self-tested by edge_app.model_store)
live in <state_dir>/models, else the shipped model runs. After the store swaps (install or rollback) the new
model is loaded and handed to the pipeline in one assignment, so a window is analysed wholly by the old or
wholly by the new model. A model that fails to load is audited and the running one kept. Every load and swap
is audited, and the uplink's birth message is told (DeviceInfoChanged).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from edge_app.messages import DeviceInfoChanged

if TYPE_CHECKING:
    from edge_app.config import Config
    from edge_app.inference import LoadedModel
    from edge_app.model_store import ModelStore
    from edge_app.storage import AuditLog

log = logging.getLogger(__name__)


class ModelRuntime:
    def __init__(self, cfg: Config, audit: AuditLog, publish: Callable[[DeviceInfoChanged], None]):
        from edge_app.model_store import ModelStore
        self.cfg = cfg
        self.audit = audit
        self.publish = publish
        self.on_swap: Callable[[LoadedModel], None] | None = None    # the pipeline takes the new model
        self.store: ModelStore = ModelStore(cfg.state_dir, cfg.manifest_path, on_change=self._swap)
        manifest = self.store.active_manifest_path()
        self.model = self._load(manifest)
        self.audit.append("model_loaded", {"version": self.model.model_version, "sha256": self.model.model_sha256,
                                           "manifest": str(manifest),
                                           "backend": str(getattr(self.model.backend, "name", ""))})

    def _load(self, manifest_path: str) -> LoadedModel:
        from edge_app.inference import load_model
        return load_model(manifest_path, backend=self.cfg.get("model.backend"),
                          num_threads=self.cfg.get("model.num_threads"))

    def _swap(self, manifest_path: str) -> None:
        """The model store swapped (already verified and self-tested): load the new model and switch."""
        old = self.model
        try:
            new = self._load(manifest_path)
        except Exception as e:  # noqa: BLE001 - keep the running model; say so loudly
            log.error("new model %s failed to load (%s); keeping %s", manifest_path, e, old.model_version)
            self.audit.append("model_change_failed", {"manifest": str(manifest_path), "error": str(e)})
            return
        self.model = new
        if self.on_swap is not None:
            self.on_swap(new)
        self.audit.append("model_changed", {"from": {"version": old.model_version, "sha256": old.model_sha256},
                                            "to": {"version": new.model_version, "sha256": new.model_sha256},
                                            "manifest": str(manifest_path)})
        log.warning("model changed: %s -> %s", old.model_version, new.model_version)
        self.publish(DeviceInfoChanged({"model_version": new.model_version, "model_sha256": new.model_sha256}))
