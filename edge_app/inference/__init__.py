"""Device-side inference: backend seam (LiteRT today), manifest-verified model loading, numpy Grad-CAM,
self-test. Never imports TensorFlow."""
from edge_app.inference.backend import BackendError, InferenceBackend, available_backends, create_backend, register_backend
from edge_app.inference.model import LoadedModel, ModelError, Prediction, load_model, verify_manifest
from edge_app.inference.selftest import SelfTestReport, run_selftest

__all__ = ["BackendError", "InferenceBackend", "available_backends", "create_backend", "register_backend",
           "LoadedModel", "ModelError", "Prediction", "load_model", "verify_manifest", "SelfTestReport", "run_selftest"]
