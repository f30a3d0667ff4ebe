"""Small ONNX graph helpers shared by the FP16 and INT8 passes and the segmenter check.

``tail_nodes`` answers one question both passes ask: which nodes sit after the last convolution
on the way to an output. For the VQ encoder that is the code normalisation, the similarity
MatMul against the codebook and the ArgMax (they must stay float: one flipped argmax is a wrong
token); for a YOLO-seg graph it is the box/score decoding head (boxes in pixels and scores in
[0, 1] must not share one INT8 scale).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import InvalidOnnxError


def load_checked(path: Path, *, what: str) -> onnx.ModelProto:
    """Parse and check an ONNX file; any failure is one InvalidOnnxError naming the file."""
    if not path.is_file():
        raise InvalidOnnxError(f"{what} {path}: no such file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise InvalidOnnxError(f"{what} {path} is not an ONNX model: {type(exc).__name__}: {exc}") from None
    if not model.graph.node:
        raise InvalidOnnxError(f"{what} {path} is not an ONNX model: empty graph")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise InvalidOnnxError(f"{what} {path} fails the ONNX checker: {first}") from None
    return model


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def tail_nodes(model: onnx.ModelProto, outputs: Iterable[str], stop_ops: Iterable[str] = ("Conv",), *,
               include_stop: bool = False) -> list[str]:
    """Names of the nodes between the last ``stop_ops`` node and ``outputs``, in graph order.

    ``include_stop`` adds the ``stop_ops`` nodes the walk ends on (for the encoder: the 1x1
    projection to the code dimension, whose output direction *is* the token).
    """
    stop = set(stop_ops)
    made_by = producers(model)
    seen: set[str] = set()
    todo = list(outputs)
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in seen:
            continue
        if node.op_type in stop:
            if include_stop:
                seen.add(node.name)
            continue
        seen.add(node.name)
        todo.extend(i for i in node.input if i)
    return [n.name for n in model.graph.node if n.name in seen]


def shapes(values: Iterable[onnx.ValueInfoProto]) -> dict[str, list[int | str]]:
    """{'image': [1, 3, 'height', 'width']}: dims as ints, or their symbolic names."""
    out: dict[str, list[int | str]] = {}
    for v in values:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return out


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes stable names (block and exclusion lists address nodes by name)."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return model
