"""Inference backends: registry, ONNX Runtime on real tiny graphs, TensorRT's pure helpers."""

from __future__ import annotations

import enum
import importlib.util
import logging

import numpy as np
import pytest

from edge.runtime import (
    BACKENDS,
    BackendError,
    BackendUnavailable,
    OnnxRuntimeBackend,
    RuntimeConfig,
    UnknownBackend,
    create_backend,
)
from edge.runtime import tensorrt as trt_backend
from edge.runtime.onnx import resolve_providers
from link.config import ConfigError, from_dict


def test_registry_lists_backends_and_rejects_unknown():
    assert {"onnxruntime", "tensorrt"} <= set(BACKENDS.names())
    with pytest.raises(UnknownBackend, match="valid choices: onnxruntime, tensorrt"):
        create_backend("x.onnx", RuntimeConfig(backend="openvino"))


def test_onnxruntime_runs_dynamic_encoder(graphs, caplog):
    caplog.set_level(logging.INFO, logger="edge.runtime")
    with create_backend(graphs["encoder"], RuntimeConfig(intra_op_threads=1)) as be:
        assert isinstance(be, OnnxRuntimeBackend)
        assert be.input_names == ["image"] and be.output_names == ["indices"]
        assert be.inputs[0].shape == (1, 3, None, None)
        assert be.outputs[0].dtype == np.int64
        out = be.run({"image": np.random.default_rng(0).random((1, 3, 24, 40))})  # float64 is cast
        assert out["indices"].shape == (1, 3, 5) and out["indices"].dtype == np.int64
    assert "encoder.onnx" in caplog.text and "providers=CPUExecutionProvider" in caplog.text


def test_onnxruntime_errors_are_typed(graphs, tmp_path):
    with pytest.raises(BackendError, match="not found"):
        create_backend(tmp_path / "missing.onnx").load()
    be = create_backend(graphs["encoder"], RuntimeConfig(warmup=False)).load()
    with pytest.raises(BackendError, match="missing inputs"):
        be.run({"img": np.zeros((1, 3, 8, 8))})
    with pytest.raises(BackendError, match="onnxruntime failed"):
        be.run({"image": np.zeros((1, 4, 8, 8))})
    be.close()


def test_unavailable_providers_are_dropped_with_a_log_line(caplog):
    chosen = resolve_providers(["tensorrt", "cuda", "cpu"], ["CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider not available" in caplog.text
    assert resolve_providers(["cuda"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    full = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["cuda", "cpu"], full) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match="valid: cpu, cuda, tensorrt"):
        resolve_providers(["npu"], full)


def test_runtime_config_from_toml_dict():
    cfg = from_dict(RuntimeConfig, {"backend": "tensorrt", "providers": ["cuda", "cpu"], "intra_op_threads": 2})
    assert cfg.providers == ["cuda", "cpu"]
    with pytest.raises(ConfigError, match="providers"):
        from_dict(RuntimeConfig, {"providers": ["gpu"]})
    with pytest.raises(ConfigError, match="intra_op_threads"):
        from_dict(RuntimeConfig, {"intra_op_threads": -1})


class FakeDataType(enum.Enum):  # stands in for tensorrt.DataType
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 8
    FP8 = 9


def test_tensorrt_dtype_mapping():
    assert trt_backend.numpy_dtype(FakeDataType.FLOAT) == np.float32
    assert trt_backend.numpy_dtype(FakeDataType.HALF) == np.float16
    assert trt_backend.numpy_dtype(FakeDataType.INT64) == np.int64
    assert trt_backend.numpy_dtype("DataType.INT32") == np.int32
    with pytest.raises(BackendError, match="FP8 has no numpy equivalent"):
        trt_backend.numpy_dtype(FakeDataType.FP8)


def test_tensorrt_shape_handling():
    assert trt_backend.engine_shape([1, 3, -1, -1]) == (1, 3, None, None)
    declared = (1, 3, None, None)
    assert trt_backend.resolve_shape("image", declared, (1, 3, 64, 96)) == (1, 3, 64, 96)
    with pytest.raises(BackendError, match="expected shape"):
        trt_backend.resolve_shape("image", declared, (1, 1, 64, 96))
    with pytest.raises(BackendError, match="expected rank 4"):
        trt_backend.resolve_shape("image", declared, (3, 64, 96))
    assert trt_backend.warmup_shape(declared, (1, 3, 512, 768)) == (1, 3, 512, 768)
    assert trt_backend.warmup_shape(declared, None) == (1, 3, 64, 64)


def test_tensorrt_unavailable_is_typed_and_logged(monkeypatch, caplog, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    assert "tensorrt" not in BACKENDS.available()
    with pytest.raises(BackendUnavailable, match="'tensorrt' Python package is not installed") as err:
        create_backend(tmp_path / "m.engine", RuntimeConfig(backend="tensorrt"))
    assert "available: onnxruntime" in str(err.value)
    assert "unavailable" in caplog.text


@pytest.mark.gpu
def test_tensorrt_engine_round_trip(graphs, tmp_path):
    trt = pytest.importorskip("tensorrt")
    if trt_backend.missing_libraries() is not None:
        pytest.skip(trt_backend.missing_libraries())
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.WARNING))
    assert parser.parse(graphs["scorer"].read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 3, 8, 8), (1, 3, 64, 96), (1, 3, 512, 768))
    config.add_optimization_profile(profile)
    engine = tmp_path / "scorer.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    with create_backend(graphs["scorer"]) as ref, create_backend(engine, RuntimeConfig(backend="tensorrt")) as be:
        assert be.inputs[0].shape == (1, 3, None, None)
        np.testing.assert_allclose(be.run({"image": x})["difficulty"], ref.run({"image": x})["difficulty"], atol=1e-3)
