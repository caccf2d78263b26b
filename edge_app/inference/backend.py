"""The inference backend seam: one small interface, a registry, so other accelerators can slot in.

Like Frigate's detectors: the daemon asks for a backend by name ("litert" today; "coral" / "tensorrt" could
register themselves later) and only ever calls `load` and `run`. Outputs are looked up BY NAME
("probabilities", "feature_map"), never by tensor index, because converters reorder tensors freely.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np


class BackendError(RuntimeError):
    """The backend is not available on this device or could not load/run the model."""


class InferenceBackend(ABC):
    """Runs one model file. Implementations must be safe to call from one thread at a time."""

    name: str = "abstract"

    @abstractmethod
    def load(self, path: str, num_threads: int = 1) -> None:
        """Load the model file; raise BackendError with the reason when it cannot be loaded."""

    @abstractmethod
    def run(self, ecg: np.ndarray, demographics: np.ndarray) -> dict[str, np.ndarray]:
        """ecg (1, 1000, 12) float32, demographics (1, 4) float32 -> {output name: array}."""

    @property
    @abstractmethod
    def input_names(self) -> list[str]:
        ...

    @property
    @abstractmethod
    def output_names(self) -> list[str]:
        ...


_REGISTRY: dict[str, Callable[[], InferenceBackend]] = {}


def register_backend(name: str):
    """Class decorator: make a backend available as `create_backend(name)`."""
    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def create_backend(name: str) -> InferenceBackend:
    if name not in _REGISTRY:
        raise BackendError(f"unknown inference backend {name!r}; available: {available_backends()}")
    return _REGISTRY[name]()
