"""Native TensorRT 10 backend for Jetson / GPU edges: a serialized ``.engine`` file in, numpy out.

Imports are guarded: ``tensorrt`` and ``pycuda`` (or ``cuda-python`` as a fallback) are looked up
without importing them, so ``import edge`` works on any machine and the registry can report the
backend as unavailable with the reason. The pure helpers (dtype mapping, shape resolution) carry
no GPU dependency and are unit-tested everywhere.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from .base import InferenceBackend, TensorSpec
from .registry import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

# TensorRT DataType member names -> numpy; keyed by name so the table needs no tensorrt import.
TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
}


def missing_libraries() -> str | None:
    """Why this backend cannot run here, or None when tensorrt and a CUDA binding are installed."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the 'tensorrt' Python package is not installed (pip install tokencast[tensorrt])"
    if importlib.util.find_spec("pycuda") is None and importlib.util.find_spec("cuda") is None:
        return "neither 'pycuda' nor 'cuda-python' is installed for device buffers"
    return None


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype for a ``tensorrt.DataType`` (or anything whose name/str ends in the member name)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in TRT_DTYPES:
        raise BackendError(f"TensorRT dtype {name} has no numpy equivalent; supported: {', '.join(TRT_DTYPES)}")
    return TRT_DTYPES[name]


def engine_shape(dims: Any) -> tuple[int | None, ...]:
    """TensorRT Dims (-1 = dynamic) -> a TensorSpec shape (None = dynamic)."""
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def resolve_shape(name: str, declared: tuple[int | None, ...], given: tuple[int, ...]) -> tuple[int, ...]:
    """Check an input array's shape against the engine's declared one; dynamic dims accept any size."""
    if len(declared) != len(given):
        raise BackendError(f"input {name!r}: expected rank {len(declared)} {declared}, got shape {given}")
    for d, g in zip(declared, given, strict=True):
        if d is not None and d != g:
            raise BackendError(f"input {name!r}: expected shape {declared}, got {given}")
    return tuple(int(g) for g in given)


def warmup_shape(declared: tuple[int | None, ...], profile_opt: tuple[int, ...] | None) -> tuple[int, ...]:
    """Warm-up shape: the optimisation profile's opt shape where dims are dynamic."""
    if profile_opt is not None and len(profile_opt) == len(declared):
        return tuple(int(o) if d is None else d for d, o in zip(declared, profile_opt, strict=True))
    return TensorSpec("", declared, np.dtype(np.float32)).concrete()


class _Pycuda:
    """Device buffers and a stream through pycuda, in the device's primary context."""

    def __init__(self, device_id: int) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.ctx = cuda.Device(device_id).retain_primary_context()
        self.ctx.push()
        self.stream = cuda.Stream()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def alloc(self, nbytes: int) -> Any:
        return self.cuda.mem_alloc(max(nbytes, 1))

    def ptr(self, buf: Any) -> int:
        return int(buf)

    def htod(self, buf: Any, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(buf, host, self.stream)

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        self.cuda.memcpy_dtoh_async(host, buf, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def free(self, buf: Any) -> None:
        buf.free()

    def close(self) -> None:
        self.ctx.pop()
        self.ctx.detach()


class _CudaPython:
    """The same five operations through cuda-python's runtime API."""

    def __init__(self, device_id: int) -> None:
        from cuda import cudart

        self.rt = cudart
        self._check(cudart.cudaSetDevice(device_id))
        self.stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result: tuple) -> Any:
        if int(result[0]) != 0:
            raise BackendError(f"CUDA runtime error {result[0]}")
        return result[1] if len(result) > 1 else None

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def alloc(self, nbytes: int) -> Any:
        return self._check(self.rt.cudaMalloc(max(nbytes, 1)))

    def ptr(self, buf: Any) -> int:
        return int(buf)

    def htod(self, buf: Any, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buf, host.ctypes.data, host.nbytes, kind, self.stream))

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, buf, host.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def free(self, buf: Any) -> None:
        self._check(self.rt.cudaFree(buf))

    def close(self) -> None:
        self._check(self.rt.cudaStreamDestroy(self.stream))


class TensorRTBackend(InferenceBackend):
    """Runs a serialized TensorRT 10 engine (``trtexec --saveEngine`` or ``export/``'s builder)."""

    name = "tensorrt"

    def _open(self) -> None:
        reason = missing_libraries()
        if reason is not None:
            log.error("tensorrt backend unavailable: %s", reason)
            raise BackendUnavailable("inference", self.name, reason, ["onnxruntime"])
        import tensorrt as trt

        self._trt = trt
        try:
            self._dev: _Pycuda | _CudaPython = _Pycuda(self.config.device_id)
        except ImportError:
            self._dev = _CudaPython(self.config.device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if self._engine is None:
            self._dev.close()
            self._dev = None  # type: ignore[assignment]
            raise BackendError(
                f"TensorRT could not deserialize {self.model_path} (built for another TensorRT or GPU?)"
            )
        self._context = self._engine.create_execution_context()
        self._buffers: dict[str, tuple[Any, int]] = {}
        self._profile_opt: dict[str, tuple[int, ...]] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            spec = TensorSpec(
                name,
                engine_shape(self._engine.get_tensor_shape(name)),
                numpy_dtype(self._engine.get_tensor_dtype(name)),
            )
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(spec)
                if None in spec.shape:
                    _, opt, _ = self._engine.get_tensor_profile_shape(name, 0)
                    self._profile_opt[name] = tuple(int(d) for d in opt)
            else:
                self.outputs.append(spec)

    def _warmup_feed(self) -> dict[str, np.ndarray]:
        return {
            t.name: np.zeros(warmup_shape(t.shape, self._profile_opt.get(t.name)), t.dtype) for t in self.inputs
        }

    def describe(self) -> str:
        dtypes = sorted({np.dtype(t.dtype).name for t in self.inputs + self.outputs})
        return f"TensorRT {self._trt.__version__}, io dtypes {'/'.join(dtypes)}"

    def _buffer(self, name: str, nbytes: int) -> Any:
        buf = self._buffers.get(name)
        if buf is None or buf[1] < nbytes:  # grow only; dynamic shapes reuse the larger buffer
            if buf is not None:
                self._dev.free(buf[0])
            buf = (self._dev.alloc(nbytes), nbytes)
            self._buffers[name] = buf
        return buf[0]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx = self._context
        for t in self.inputs:
            arr = feed[t.name]
            ctx.set_input_shape(t.name, resolve_shape(t.name, t.shape, arr.shape))
            buf = self._buffer(t.name, arr.nbytes)
            self._dev.htod(buf, arr)
            ctx.set_tensor_address(t.name, self._dev.ptr(buf))
        results: dict[str, np.ndarray] = {}
        for t in self.outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(t.name))
            results[t.name] = np.empty(shape, t.dtype)
            ctx.set_tensor_address(t.name, self._dev.ptr(self._buffer(t.name, results[t.name].nbytes)))
        if not ctx.execute_async_v3(self._dev.stream_handle):
            raise BackendError(f"TensorRT execution failed for {self.model_path.name}")
        for t in self.outputs:
            self._dev.dtoh(results[t.name], self._buffers[t.name][0])
        self._dev.sync()
        return results

    def close(self) -> None:
        if getattr(self, "_dev", None) is not None:
            for buf, _ in getattr(self, "_buffers", {}).values():
                self._dev.free(buf)
            self._buffers = {}
            self._context = self._engine = self._runtime = None
            self._dev.close()
            self._dev = None  # type: ignore[assignment]
        super().close()
