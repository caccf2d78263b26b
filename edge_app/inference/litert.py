"""LiteRT (TensorFlow Lite) backend: the device runtime. Uses the model's serving_default signature so
inputs/outputs are addressed by name. Falls back to tflite_runtime on older images."""
from __future__ import annotations

import numpy as np

from edge_app.inference.backend import BackendError, InferenceBackend, register_backend
from edge_app.inference.runtime_log import quiet_runtime_info

SIGNATURE = "serving_default"


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore
            return Interpreter
        except ImportError as e:
            raise BackendError("no LiteRT interpreter: install ai-edge-litert (or tflite-runtime)") from e


@register_backend("litert")
class LiteRTBackend(InferenceBackend):
    def __init__(self) -> None:
        self._interp = None
        self._runner = None
        self._sig: dict = {}

    def load(self, path: str, num_threads: int = 1) -> None:
        Interpreter = _interpreter_class()
        try:
            with quiet_runtime_info():       # allocate now: the XNNPACK "INFO: Created ..." line is filtered
                self._interp = Interpreter(model_path=str(path), num_threads=int(num_threads))
                self._interp.allocate_tensors()
        except Exception as e:  # the interpreter raises ValueError/RuntimeError for corrupt files
            raise BackendError(f"LiteRT could not load {path}: {e}") from e
        sigs = self._interp.get_signature_list()
        if SIGNATURE not in sigs:
            raise BackendError(f"{path} has no '{SIGNATURE}' signature (found {list(sigs)}); re-export the model")
        self._sig = sigs[SIGNATURE]
        self._runner = self._interp.get_signature_runner(SIGNATURE)

    @property
    def input_names(self) -> list[str]:
        return list(self._sig.get("inputs", []))

    @property
    def output_names(self) -> list[str]:
        return list(self._sig.get("outputs", []))

    def run(self, ecg: np.ndarray, demographics: np.ndarray) -> dict[str, np.ndarray]:
        if self._runner is None:
            raise BackendError("model not loaded")
        out = self._runner(ecg=np.ascontiguousarray(ecg, dtype=np.float32),
                           demographics=np.ascontiguousarray(demographics, dtype=np.float32))
        return {k: np.array(v) for k, v in out.items()}
