"""FP32 -> FP16 ONNX with float32 kept where precision decides the answer.

``convert_float_to_float16`` with ``keep_io_types=True`` (callers keep feeding float32 images),
ArgMax plus every node after the last convolution on the way to an output (for the encoder: code
normalisation and the codebook similarity MatMul) blocked, so the codebook initializer stays
float32. The converter silently clamps weights to ``max_finite_val`` (default 1e4): we pass the
real FP16 limit and refuse, instead of clipping, any converted weight beyond it.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnxconverter_common import float16

from .errors import Fp16RangeError
from .graph import name_nodes, tail_nodes

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FLOAT32_OPS = ("ArgMax",)


def retarget_casts(model: onnx.ModelProto) -> int:
    """Point Casts the converter retyped to float16 (output value_info) but left ``to=FLOAT`` at float16.

    Such Casts come from shape arithmetic (attention's 1/sqrt(head_dim) scale); ONNX Runtime
    rejects the mismatch at load. Returns how many were fixed.
    """
    fp16_values = {v.name for v in model.graph.value_info
                   if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    fixed = 0
    for n in model.graph.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == onnx.TensorProto.FLOAT and n.output[0] in fp16_values:
                a.i = onnx.TensorProto.FLOAT16
                fixed += 1
    return fixed


def blocked_nodes(model: onnx.ModelProto, float32_tails: bool) -> list[str]:
    """Nodes kept in float32: ArgMax everywhere, and the post-conv tail for graphs that pick codes."""
    names = [n.name for n in model.graph.node if n.op_type in FLOAT32_OPS]
    if float32_tails:
        names += tail_nodes(model, [o.name for o in model.graph.output])
    return sorted(set(names))


def float32_initializers(model: onnx.ModelProto, blocked: list[str]) -> set[str]:
    """Initializers read only by blocked nodes: the converter leaves these float32."""
    inits = {i.name for i in model.graph.initializer}
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for i in node.input:
            if i in inits:
                readers.setdefault(i, set()).add(node.name)
    keep = set(blocked)
    return {name for name, by in readers.items() if by <= keep}


def check_range(model: onnx.ModelProto, kept_float32: set[str]) -> None:
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name in kept_float32:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size and not np.isfinite(arr).all():
            raise Fp16RangeError(f"weight {init.name!r} has non-finite values; refusing FP16 conversion")
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        if peak > FP16_MAX:
            raise Fp16RangeError(
                f"weight {init.name!r} reaches {peak:.6g}, beyond FP16's {FP16_MAX:g}; it would be clipped "
                "(block its node or keep this model in fp32)")


def to_fp16(model: onnx.ModelProto, *, float32_tails: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """Return (fp16 model, names of the nodes kept float32)."""
    model = name_nodes(onnx.ModelProto.FromString(model.SerializeToString()))
    blocked = blocked_nodes(model, float32_tails)
    kept = float32_initializers(model, blocked)
    check_range(model, kept)
    before = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in kept}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one line per tiny weight flushed towards FP16's subnormals
        out = float16.convert_float_to_float16(
            model, keep_io_types=True, max_finite_val=FP16_MAX,
            op_block_list=sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FLOAT32_OPS)), node_block_list=blocked,
        )
    retarget_casts(out)
    after = {i.name: i for i in out.graph.initializer}
    for name, arr in before.items():
        got = after.get(name)
        if got is None or got.data_type != onnx.TensorProto.FLOAT or not np.array_equal(numpy_helper.to_array(got), arr):
            raise Fp16RangeError(f"float32 initializer {name!r} was altered by the FP16 conversion")
    return out, blocked
