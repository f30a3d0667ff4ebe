"""INT8 exclusion logic on the random-init encoder: the float tail, the last conv, the fallback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export import calib, int8
from export.graph import name_nodes, tail_nodes

CONVS_BEFORE_PROJ = 8  # stem conv, stem ResBlock x2, down, 2 ResBlocks x2


@pytest.fixture(scope="module")
def encoder(built):
    out, _, _ = built
    return out / "encoder.fp32.onnx", name_nodes(onnx.load(str(out / "encoder.fp32.onnx")))


@pytest.fixture(scope="module")
def feeds():
    return [{"image": calib.to_batch(im)} for im in calib.load_images(None, (64, 64))[:2]]


def _quantized_convs(model: onnx.ModelProto) -> set[str]:
    """Convs whose weight arrives through a DequantizeLinear."""
    made_by = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node
            if n.op_type == "Conv" and (p := made_by.get(n.input[1])) is not None and p.op_type == "DequantizeLinear"}


def test_tail_stops_at_the_projection_and_can_include_it(encoder):
    _, model = encoder
    ops = {n.name: n.op_type for n in model.graph.node}
    tail = tail_nodes(model, ["indices"])
    assert {"ReduceL2", "Div", "MatMul", "ArgMax"} <= {ops[n] for n in tail} and "Conv" not in {ops[n] for n in tail}
    with_conv = int8.excluded_nodes(model, ["indices"], last_conv=True)
    assert set(with_conv) - set(tail) == {"/encoder/proj/Conv"}
    assert len(int8.quantizable(model, with_conv)) == CONVS_BEFORE_PROJ


def test_choose_quantized_is_cheapest_first_within_a_root_sum_square_budget():
    costs = {"a": 0.01, "b": 0.02, "c": 0.02, "d": 0.05}
    assert int8.choose_quantized(costs, 0.03) == ["a", "b", "c"]  # sqrt(1+4+4)/100 = 0.03
    assert int8.choose_quantized(costs, 0.029) == ["a", "b"]
    assert int8.choose_quantized(costs, 0.0) == []
    assert int8.choose_quantized({"z": 0.0, "y": 0.0}, 0.0) == ["y", "z"]


def test_tensorrt_target_quantizes_conv_inputs_only_and_keeps_the_projection_float(encoder, feeds, tmp_path):
    path, _ = encoder
    out = tmp_path / "enc.int8.onnx"
    kept = int8.to_int8(path, out, feeds, exclude_tails_of=["indices"], code_target=int8.CodeTarget("indices", 0.0),
                        target="tensorrt")
    model = onnx.load(str(out))
    quantized = _quantized_convs(model)
    assert quantized and "/encoder/proj/Conv" not in quantized and kept
    made_by = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("Sigmoid", "Mul", "Add", "ReduceL2", "Div"):
            assert all(made_by.get(i) is None or made_by[i].op_type != "DequantizeLinear" for i in n.input), n.name


@pytest.mark.parametrize(("minimum", "quantized"), [(0.0, CONVS_BEFORE_PROJ), (1.01, 0)])
def test_code_target_decides_how_many_convs_stay_float(encoder, feeds, tmp_path, minimum, quantized):
    path, _ = encoder
    out = tmp_path / "enc.int8.onnx"
    kept = int8.to_int8(path, out, feeds, exclude_tails_of=["indices"],
                        code_target=int8.CodeTarget("indices", minimum))
    model = onnx.load(str(out))
    assert len(_quantized_convs(model)) == quantized
    assert "/encoder/proj/Conv" in kept and len([k for k in kept if k.endswith("Conv")]) == 9 - quantized


def test_code_target_result_meets_its_minimum(encoder, feeds, tmp_path):
    path, _ = encoder
    import onnxruntime as ort

    out = tmp_path / "enc.int8.onnx"
    int8.to_int8(path, out, feeds, exclude_tails_of=["indices"], code_target=int8.CodeTarget("indices", 0.97))
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = [ref.run(None, f)[0] for f in feeds]
    assert int8.agreement(out, feeds, "indices", reference) >= 0.97
    assert np.all(reference[0] >= 0)


def test_cpu_target_quantizes_conv_outputs_so_onnxruntime_fuses_them(encoder, feeds, tmp_path):
    path, _ = encoder
    out = tmp_path / "enc.cpu.int8.onnx"
    int8.to_int8(path, out, feeds, exclude_tails_of=["indices"], code_target=int8.CodeTarget("indices", 0.0),
                 target="cpu")
    model = onnx.load(str(out))
    quantized = _quantized_convs(model)
    assert len(quantized) == CONVS_BEFORE_PROJ and "/encoder/proj/Conv" not in quantized
    readers = {i: n for n in model.graph.node for i in n.input}
    convs = {n.name: n for n in model.graph.node}
    assert all(readers[convs[c].output[0]].op_type == "QuantizeLinear" for c in quantized)
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)
    with pytest.raises(ValueError, match="valid: tensorrt, cpu"):
        int8.to_int8(path, out, feeds, target="gpu")
