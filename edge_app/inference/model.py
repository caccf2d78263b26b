"""Load the shipped model with its manifest and run it: the device's only way to a triage probability.

`load_model` refuses a model whose file or Grad-CAM head does not match the manifest's sha256, or whose
input contract differs from the one this device builds (edge_app.signal_chain.contract.CONTRACT): a model
trained on another contract would silently read the signal wrong.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_app.inference import gradcam
from edge_app.inference.backend import BackendError, create_backend
from edge_app.signal_chain.contract import CLASSES, CONTRACT, N_SAMPLES, demographics_vector, make_model_input

# importing the module registers the backend
from edge_app.inference import litert as _litert  # noqa: F401

MANIFEST_FORMAT = 1
REQUIRED_KEYS = ("format_version", "model_file", "model_sha256", "model_version", "contract", "classes",
                 "signature", "gradcam", "thresholds")


class ModelError(RuntimeError):
    """The model or its manifest cannot be used; the message names what is wrong and how to fix it."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contract_mismatch(got: dict, want: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(got) | set(want)):
        if k not in got:
            out.append(f"{prefix}{k} missing in manifest")
        elif k not in want:
            out.append(f"{prefix}{k} not in device contract")
        elif isinstance(got[k], dict) and isinstance(want[k], dict):
            out += _contract_mismatch(got[k], want[k], f"{prefix}{k}.")
        elif got[k] != want[k]:
            out.append(f"{prefix}{k}: model {got[k]!r} != device {want[k]!r}")
    return out


@dataclass
class Prediction:
    """One model output. A triage aid, not a diagnosis."""
    probabilities: dict[str, float]
    positive: dict[str, bool]                # probability >= the manifest's operating threshold
    thresholds: dict[str, float]
    cam: dict[str, np.ndarray]               # per class, logit contribution over time at the input rate (1000,)
    feature_map: np.ndarray                  # (T', C) as exported
    model_version: str
    model_sha256: str
    demographics: np.ndarray                 # (4,) what the model was given
    latency_ms: float
    disclaimer: str = "Triage aid, not a diagnosis."

    def to_dict(self, cam_points: int = 100) -> dict:
        """JSON-ready summary; CAMs decimated to `cam_points` samples per class (None/0 drops them)."""
        d = {"probabilities": self.probabilities, "positive": self.positive, "thresholds": self.thresholds,
             "model_version": self.model_version, "model_sha256": self.model_sha256,
             "latency_ms": round(self.latency_ms, 3), "disclaimer": self.disclaimer}
        if cam_points:
            step = max(1, len(next(iter(self.cam.values()))) // cam_points)
            d["cam"] = {c: [round(float(v), 4) for v in a[::step]] for c, a in self.cam.items()}
        return d


@dataclass
class LoadedModel:
    manifest: dict
    manifest_path: Path
    model_path: Path
    backend: object
    head: gradcam.GradCamHead
    classes: tuple[str, ...] = field(default=CLASSES)

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def model_sha256(self) -> str:
        return str(self.manifest["model_sha256"])

    @property
    def thresholds(self) -> dict[str, float]:
        return {c: float(self.manifest["thresholds"][c]) for c in self.classes}

    # ------------------------------------------------------------------ raw runs (contract-domain input)
    def run_inputs(self, ecg: np.ndarray, demographics: np.ndarray) -> dict[str, np.ndarray]:
        """ecg (1000,12)|(1,1000,12) contract-domain mV, demographics (4,)|(1,4) -> named outputs."""
        e = np.asarray(ecg, dtype=np.float32).reshape(1, N_SAMPLES, 12)
        d = np.asarray(demographics, dtype=np.float32).reshape(1, 4)
        out = self.backend.run(e, d)
        for name in ("probabilities", "feature_map"):
            if name not in out:
                raise ModelError(f"backend output lacks '{name}' (got {sorted(out)})")
        return out

    def predict_inputs(self, ecg: np.ndarray, demographics: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        out = self.run_inputs(ecg, demographics)
        latency = (time.perf_counter() - t0) * 1000.0
        p = np.asarray(out["probabilities"], dtype=np.float64).reshape(-1)
        fmap = np.asarray(out["feature_map"], dtype=np.float32).reshape(out["feature_map"].shape[-2:])
        cam = gradcam.upsample(gradcam.class_activation_map(fmap, self.head.W), N_SAMPLES, self.head)
        th = self.thresholds
        return Prediction(
            probabilities={c: float(p[k]) for k, c in enumerate(self.classes)},
            positive={c: bool(p[k] >= th[c]) for k, c in enumerate(self.classes)},
            thresholds=th, cam={c: cam[k] for k, c in enumerate(self.classes)}, feature_map=fmap,
            model_version=self.model_version, model_sha256=self.model_sha256,
            demographics=np.asarray(demographics, dtype=np.float32).reshape(4), latency_ms=latency)

    # ------------------------------------------------------------------------- from microvolts (device)
    def predict(self, window_uv_100hz: np.ndarray, age: float | None = None, sex: str | int | None = None) -> Prediction:
        """(1000, 12) microvolts at 100 Hz in contract lead order + age/sex (None = unknown) -> Prediction."""
        return self.predict_inputs(make_model_input(window_uv_100hz), demographics_vector(age, sex))

    def lead_importance(self, window_uv_100hz: np.ndarray, age: float | None = None, sex: str | int | None = None,
                        leads: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
        """Per-lead importance by occlusion: the drop in each class's ECG logit when one lead is zeroed.

        Costs one extra inference per lead (12 by default; pass `leads` to check fewer). The logit is taken
        from the feature map through the exact CAM identity (mean_t CAM + demographic term + bias), which is
        finer-grained than the int8 probability output (1/256 steps, saturating near 0 and 1).
        Positive = the lead supports that class. {class: (12,) array} in contract lead order (nan = skipped).
        """
        x = make_model_input(window_uv_100hz)
        d = demographics_vector(age, sex)
        base = self._cam_logits(x, d)
        imp = np.full((len(self.classes), 12), np.nan)
        for lead in (range(12) if leads is None else leads):
            xo = x.copy()
            xo[:, lead] = 0.0
            imp[:, lead] = base - self._cam_logits(xo, d)
        return {c: imp[k] for k, c in enumerate(self.classes)}

    def _cam_logits(self, ecg: np.ndarray, demographics: np.ndarray) -> np.ndarray:
        fmap = self.run_inputs(ecg, demographics)["feature_map"]
        return gradcam.logits_from_cam(gradcam.class_activation_map(fmap, self.head.W), demographics, self.head)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def read_manifest(manifest_path: str | Path) -> dict:
    mp = Path(manifest_path)
    if not mp.exists():
        raise ModelError(f"model manifest {mp} not found (set the model path in the config to a manifest.json)")
    try:
        m = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"model manifest {mp} is not valid JSON: {e}") from e
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise ModelError(f"model manifest {mp} lacks keys {missing}")
    if m["format_version"] != MANIFEST_FORMAT:
        raise ModelError(f"model manifest format_version {m['format_version']} unsupported (device reads {MANIFEST_FORMAT})")
    return m


def verify_manifest(manifest_path: str | Path) -> tuple[dict, Path, Path]:
    """Check hashes and contract without loading the interpreter. Returns (manifest, model_path, gradcam_path)."""
    mp = Path(manifest_path)
    m = read_manifest(mp)
    mismatch = _contract_mismatch(m["contract"], CONTRACT)
    if mismatch:
        raise ModelError("model was trained for a different input contract than this device builds: "
                         + "; ".join(mismatch) + " -- ship a model exported against the device's contract")
    if list(m["classes"]) != list(CLASSES):
        raise ModelError(f"model classes {m['classes']} != device classes {list(CLASSES)}")
    missing_th = [c for c in CLASSES if c not in m["thresholds"]]
    if missing_th:
        raise ModelError(f"manifest thresholds lack classes {missing_th}")
    model_path = mp.parent / m["model_file"]
    cam_path = mp.parent / m["gradcam"]["file"]
    for path, want, what in ((model_path, m["model_sha256"], "model"), (cam_path, m["gradcam"]["sha256"], "Grad-CAM head")):
        if not path.exists():
            raise ModelError(f"{what} file {path} named in {mp} not found")
        got = sha256_file(path)
        if got != want:
            raise ModelError(f"{what} file {path} sha256 {got[:16]}... does not match manifest {want[:16]}...: "
                             "file corrupted or tampered; reinstall the model")
    return m, model_path, cam_path


def load_model(manifest_path: str | Path, backend: str = "litert", num_threads: int = 1) -> LoadedModel:
    """Verify (hashes, contract, classes) and load the model named by a manifest.json."""
    m, model_path, cam_path = verify_manifest(manifest_path)
    try:
        be = create_backend(backend)
        be.load(str(model_path), num_threads=num_threads)
    except BackendError as e:
        raise ModelError(str(e)) from e
    for group, names in (("inputs", ("ecg", "demographics")), ("outputs", ("probabilities", "feature_map"))):
        have = be.input_names if group == "inputs" else be.output_names
        lack = [n for n in names if n not in have]
        if lack:
            raise ModelError(f"model signature lacks {group} {lack} (has {have})")
    head = gradcam.GradCamHead.load(cam_path)
    if head.W.shape[1] != len(CLASSES):
        raise ModelError(f"Grad-CAM head has {head.W.shape[1]} classes, expected {len(CLASSES)}")
    return LoadedModel(manifest=m, manifest_path=Path(manifest_path), model_path=model_path, backend=be, head=head)
