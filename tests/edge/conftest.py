"""Tiny ONNX graphs standing in for the real models, built with onnx.helper so tests need no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_encoder(path: Path, codes: int = 64, seed: int = 0) -> Path:
    """image [1,3,H,W] -> Conv(k=8, s=8) -> ArgMax over channels -> indices [1,H/8,W/8] int64."""
    w = np.random.default_rng(seed).standard_normal((codes, 3, 8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["z"], kernel_shape=[8, 8], strides=[8, 8]),
            helper.make_node("ArgMax", ["z"], ["indices"], axis=1, keepdims=0),
        ],
        "encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, "h", "w"])],
        [numpy_helper.from_array(w, "w")],
    )
    return _save(graph, path)


def make_scorer(path: Path) -> Path:
    """image [1,3,H,W] -> |Conv(k=8, s=8) with a horizontal-gradient kernel| -> difficulty [1,1,H/8,W/8]."""
    k = np.zeros((1, 3, 8, 8), np.float32)
    k[0, :, :, :4], k[0, :, :, 4:] = 1.0, -1.0
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "k"], ["g"], kernel_shape=[8, 8], strides=[8, 8]),
            helper.make_node("Abs", ["g"], ["difficulty"]),
        ],
        "scorer",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("difficulty", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [numpy_helper.from_array(k, "k")],
    )
    return _save(graph, path)


def make_constant_model(path: Path, input_name: str, input_shape: list, outputs: dict[str, np.ndarray]) -> Path:
    """A graph whose outputs are fixed arrays (input read but ignored: out = const + 0 * sum(input))."""
    nodes = [helper.make_node("ReduceSum", [input_name], ["s"], keepdims=0), helper.make_node("Mul", ["s", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_c"))
        nodes.append(helper.make_node("Add", [f"{name}_c", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, "const", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)], outs, inits
    )
    return _save(graph, path)


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("graphs")
    return {"encoder": make_encoder(d / "encoder.onnx"), "scorer": make_scorer(d / "scorer.onnx")}


def photo_like(h: int = 128, w: int = 192, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 test picture: smooth gradient sky, a textured lower half, a block."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = 80 + 60 * xx / w
    img[..., 1] = 120 + 40 * yy / h
    img[..., 2] = 200 - 50 * yy / h
    img[h // 2 :] += rng.normal(0, 40, (h - h // 2, w, 3))
    img[h // 4 : h // 2, w // 3 : w // 2] = (200, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


class Builders:
    """Helpers handed to tests as a fixture (test modules import no conftest by name)."""

    encoder = staticmethod(make_encoder)
    scorer = staticmethod(make_scorer)
    constant = staticmethod(make_constant_model)
    photo = staticmethod(photo_like)


@pytest.fixture(scope="session")
def build() -> type[Builders]:
    return Builders
