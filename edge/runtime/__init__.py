"""Inference runtimes behind one contract (``InferenceBackend.run``), chosen by config string.

``create_backend("onnxruntime", path, config)`` works everywhere; ``"tensorrt"`` needs the
tensorrt and pycuda packages and otherwise raises ``BackendUnavailable`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

from .base import InferenceBackend, RuntimeConfig, TensorSpec
from .onnx import OnnxRuntimeBackend
from .registry import BackendError, BackendUnavailable, Registry, UnknownBackend
from .tensorrt import TensorRTBackend, missing_libraries

BACKENDS: Registry[InferenceBackend] = Registry("inference")
BACKENDS.register("onnxruntime", OnnxRuntimeBackend)
BACKENDS.register("tensorrt", TensorRTBackend, missing=missing_libraries)


def create_backend(model_path: str | Path, config: RuntimeConfig | None = None) -> InferenceBackend:
    """An unloaded backend for ``model_path`` as ``config.backend`` names; call ``load()`` on it."""
    config = config or RuntimeConfig()
    return BACKENDS.create(config.backend, model_path, config)


__all__ = [
    "BACKENDS",
    "BackendError",
    "BackendUnavailable",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "Registry",
    "RuntimeConfig",
    "TensorRTBackend",
    "TensorSpec",
    "UnknownBackend",
    "create_backend",
]
