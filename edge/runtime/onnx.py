"""ONNX Runtime backend: the default on every machine, CPU or CUDA / TensorRT providers.

Providers come from config as short names; ones this onnxruntime build lacks are dropped with a
log line rather than failing, so one config file serves a laptop and a Jetson.
"""

from __future__ import annotations

import logging

import numpy as np

from .base import InferenceBackend, TensorSpec
from .registry import BackendError

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def resolve_providers(wanted: list[str], available: list[str]) -> list[str]:
    """Map short names to ORT provider names, keeping order and dropping unavailable ones."""
    chosen: list[str] = []
    for short in wanted:
        if short not in PROVIDERS:
            raise BackendError(f"unknown provider {short!r}; valid: {', '.join(PROVIDERS)}")
        full = PROVIDERS[short]
        if full not in available:
            log.warning("onnxruntime: provider %s not available in this build, dropped", full)
        elif full not in chosen:
            chosen.append(full)
    if not chosen:
        log.warning("onnxruntime: none of %s available, using CPUExecutionProvider", wanted)
        chosen = ["CPUExecutionProvider"]
    return chosen


def _spec(arg: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)  # type: ignore[attr-defined]
    dtype = _ORT_TYPES.get(arg.type)  # type: ignore[attr-defined]
    if dtype is None:
        raise BackendError(f"tensor {arg.name!r} has unsupported type {arg.type}")  # type: ignore[attr-defined]
    return TensorSpec(arg.name, shape, np.dtype(dtype))  # type: ignore[attr-defined]


class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"

    def _open(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.config.intra_op_threads:
            opts.intra_op_num_threads = self.config.intra_op_threads
        opts.log_severity_level = 3
        opts.enable_mem_pattern = self.config.memory_pattern
        providers = resolve_providers(list(self.config.providers), ort.get_available_providers())
        provider_options = [
            {"device_id": str(self.config.device_id)} if p != "CPUExecutionProvider" else {} for p in providers
        ]
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), opts, providers=providers, provider_options=provider_options
            )
        except Exception as exc:  # ORT raises its own untyped errors (bad graph, bad provider)
            raise BackendError(f"onnxruntime could not load {self.model_path}: {exc}") from exc
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]

    def describe(self) -> str:
        return "providers=" + ",".join(self._session.get_providers())

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(self.output_names, feed)
        except Exception as exc:
            shapes = {k: v.shape for k, v in feed.items()}
            raise BackendError(f"onnxruntime failed on {self.model_path.name} with {shapes}: {exc}") from exc
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        self._session = None
        super().close()
