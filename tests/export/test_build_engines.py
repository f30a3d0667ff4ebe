"""The export CLI end to end on random-init weights: files, accuracy flags, manifest, cache, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from export import build_engines, manifest, validate
from models.registry import files_for

ENTRY_KEYS = set(manifest.REQUIRED_ENTRY_KEYS) | {"outputs", "metric", "threshold"}
DETECTOR_SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"


def test_manifest_schema(built):
    out, data, _ = built
    assert data["schema"] == manifest.SCHEMA and data["input_size"] == [64, 64]
    assert [im["name"] for im in data["calibration"]["images"]][0] == "skimage.data.astronaut"
    assert {"encoder", "scorer", "detector", "segmenter", "decoder", "maskgit"} <= set(data["models"])
    for name, model in data["models"].items():
        assert model["kind"] in ("edge", "cloud") and len(model["source"]["sha256"]) == 64
        for prec, e in model["engines"].items():
            if e["status"] == "skipped":
                assert model["kind"] == "cloud" and prec == "int8" and e["reason"]
                continue
            assert ENTRY_KEYS <= set(e), (name, prec)
            assert (out / e["file"]).stat().st_size == e["size_bytes"]
            assert manifest.sha256_file(out / e["file"]) == e["sha256"]
            assert e["opset"] == 17 and e["latency_ms_median"] > 0
            assert e["status"] == ("ok" if e["accuracy"][e["metric"]] >= e["threshold"] else "below_threshold")
    enc = data["models"]["encoder"]["engines"]["fp32"]
    assert enc["inputs"] == {"image": [1, 3, "height", "width"]}
    assert enc["outputs"] == {"indices": [1, "grid_h", "grid_w"]}
    assert data["models"]["maskgit"]["engines"]["fp32"]["inputs"] == {"ids": ["batch", 16, 16]}


def test_fp16_encoder_meets_threshold_and_keeps_codebook_float32(built):
    out, data, _ = built
    fp16 = data["models"]["encoder"]["engines"]["fp16"]
    assert fp16["accuracy"]["token_agreement"] >= 0.995 and fp16["status"] == "ok"
    model = onnx.load(str(out / "encoder.fp16.onnx"))
    ref = onnx.load(str(out / "encoder.fp32.onnx"))
    cb = {i.name: i for i in model.graph.initializer}["codebook_t"]
    assert cb.data_type == onnx.TensorProto.FLOAT
    np.testing.assert_array_equal(numpy_helper.to_array(cb),
                                  numpy_helper.to_array({i.name: i for i in ref.graph.initializer}["codebook_t"]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types


def test_int8_cpu_target_uint8_activations_symmetric_weights(built):
    out, data, _ = built
    e = data["models"]["encoder"]["engines"]["int8"]
    # Random weights put many codes at near-equal cosine: agreement is measured and reported, and
    # the flag follows the 97 % threshold whichever side it lands on.
    assert 0.5 < e["accuracy"]["token_agreement"] <= 1.0 and e["threshold"] == 0.97
    assert e["int8_target"] == "cpu"
    model = onnx.load(str(out / "encoder.int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and all(inits[n.input[2]].dtype == np.uint8 for n in qs if len(n.input) > 2)
    for n in model.graph.node:  # weights (int8 initializers) stay symmetric
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8:
            assert not inits[n.input[2]].any(), f"{n.name} has a non-zero weight zero point"
    made_by = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "ArgMax"):
            assert all(made_by.get(i) is None or made_by[i].op_type != "DequantizeLinear" for i in n.input)


def test_int8_tensorrt_target_is_symmetric_qdq_on_conv_inputs(built, tmp_path):
    _, _, argv = built
    out = tmp_path / "trt"
    assert build_engines.main(["--out", str(out), "--random-init", "--input-size", "64x64", "--latency-runs", "1",
                               "--models", "encoder", "--precision", "fp32", "int8", "--int8-target", "tensorrt"]) == 0
    model = onnx.load(str(out / "encoder.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            assert not inits[n.input[2]].any(), f"{n.name} has a non-zero zero point"
    readers = {i: n for n in model.graph.node for i in n.input}
    assert not any(readers.get(c.output[0]) is not None and readers[c.output[0]].op_type == "QuantizeLinear"
                   for c in model.graph.node if c.op_type == "Conv")  # TensorRT fuses the conv's output itself
    made_by = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "ArgMax"):
            assert all(made_by.get(i) is None or made_by[i].op_type != "DequantizeLinear" for i in n.input)


def test_segmenter_head_left_float_and_compared_by_iou(built):
    out, data, _ = built
    seg = data["models"]["segmenter"]
    assert seg["engines"]["fp32"]["accuracy"]["mask_iou"] == 1.0
    assert seg["engines"]["fp32"]["inputs"] == {"images": [1, 3, 64, 64]}
    model = onnx.load(str(out / "segmenter.int8.onnx"))
    made_by = {o: n for n in model.graph.node for o in n.output}
    assert made_by["output0"].op_type == "Concat"
    assert all(made_by[i].op_type != "DequantizeLinear" for i in made_by["output0"].input)
    assert 0.0 <= seg["engines"]["int8"]["accuracy"]["mask_iou"] <= 1.0


def test_recommended_engine_never_below_threshold(built):
    _, data, _ = built
    for model in data["models"].values():
        rec = model["recommended"]
        assert rec is None or model["engines"][rec]["status"] == "ok"
    engines = {"int8": {"status": "below_threshold"}, "fp16": {"status": "ok"}, "fp32": {"status": "ok"}}
    assert manifest.recommend("edge", engines) == "fp16"
    assert manifest.recommend("cloud", {"fp32": {"status": "below_threshold"}}) is None


def test_verdict_flags_a_miss():
    assert validate.verdict("encoder", "int8", {"token_agreement": 0.969}).status == "below_threshold"
    assert validate.verdict("encoder", "int8", {"token_agreement": 0.97}).status == "ok"
    assert validate.verdict("encoder", "fp16", {"token_agreement": 0.994}).status == "below_threshold"


def test_second_run_is_cached_and_identical(built, capsys):
    out, _, argv = built
    before = (out / "manifest.json").read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    assert build_engines.main(argv) == 0
    text = capsys.readouterr().out
    # every built precision once (3 per edge model, 2 per cloud model: int8 is skipped there)
    built_engines = sum(e.get("status") != "skipped" for m in json.loads(before)["models"].values()
                        for e in m["engines"].values())
    assert built_engines >= 16  # encoder, scorer, detector, segmenter; decoder, maskgit
    assert "building" not in text and text.count(": cached") == built_engines
    assert (out / "manifest.json").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == mtimes


def test_exported_encoder_runs_at_another_size(built):
    out, _, _ = built
    sess = ort.InferenceSession(str(out / "encoder.fp32.onnx"), providers=["CPUExecutionProvider"])
    (idx,) = sess.run(None, {"image": np.zeros((1, 3, 48, 80), np.float32)})
    assert idx.shape == (1, 6, 10) and idx.dtype == np.int64


@pytest.mark.parametrize("content", [b"garbage, not protobuf", None])
def test_bad_segmenter_onnx_is_one_line_exit_2(built, tmp_path, capsys, content):
    out, _, _ = built
    bad = tmp_path / "bad.onnx"
    if content is None:  # a valid ONNX without output0/output1: our own encoder
        bad.write_bytes((out / "encoder.fp32.onnx").read_bytes())
    else:
        bad.write_bytes(content)
    rc = build_engines.main(["--out", str(tmp_path / "e"), "--models", "segmenter", "--segmenter-onnx", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: InvalidOnnxError: --segmenter-onnx")
    assert ("not an ONNX model" in err) if content else ("lack ['output0', 'output1']" in err)


def test_missing_segmenter_is_said_and_skipped(tmp_path, capsys):
    assert build_engines.main(["--out", str(tmp_path), "--models", "segmenter"]) == 0
    assert "tokencast ships no segmenter" in capsys.readouterr().out


@pytest.mark.parametrize("size", ["64x60", "64", "axb"])
def test_bad_input_size_exit_2(tmp_path, size, capsys):
    assert build_engines.main(["--out", str(tmp_path), "--input-size", size, "--models", "segmenter"]) == 2
    assert "InputSizeError" in capsys.readouterr().err


def test_install_defaults_copies_fp32(built, tmp_path):
    out, _, argv = built
    dest = tmp_path / "ckpt"
    assert build_engines.main([*argv, "--install-defaults", "--install-dir", str(dest)]) == 0
    files = files_for(1)
    assert (dest / files.encoder_onnx).read_bytes() == (out / "encoder.fp32.onnx").read_bytes()
    assert (dest / files.scorer_onnx).read_bytes() == (out / "scorer.fp32.onnx").read_bytes()


def test_install_defaults_refuses_random_weights(tmp_path, capsys):
    rc = build_engines.main(["--out", str(tmp_path), "--random-init", "--install-defaults", "--models", "encoder"])
    assert rc == 2 and "random weights" in capsys.readouterr().err


def test_real_tokenizer_checkpoint_fp16(tmp_path):
    """On the trained tokenizer (when present) FP16 must hold the 99.5 % bar; INT8 is reported."""
    path = files_for(1).path("tokenizer")
    if not path.is_file():
        pytest.skip("no trained tokenizer checkpoint yet")
    assert build_engines.main(["--out", str(tmp_path), "--models", "encoder", "--precision", "fp16",
                               "--input-size", "64x96", "--latency-runs", "1"]) == 0
    data = json.loads((tmp_path / "manifest.json").read_text())
    enc = data["models"]["encoder"]
    assert not enc["source"]["random_init"] and enc["engines"]["fp16"]["accuracy"]["token_agreement"] >= 0.995


def test_fp16_refuses_weights_beyond_range():
    from onnx import TensorProto, helper

    from export.errors import Fp16RangeError
    from export.fp16 import to_fp16

    big = numpy_helper.from_array(np.array([1e5], np.float32), "big")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "big"], ["y"], name="mul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [big])
    with pytest.raises(Fp16RangeError, match="'big' reaches 100000"):
        to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_corrupt_manifest_costs_only_a_rebuild(tmp_path: Path):
    (tmp_path / "manifest.json").write_text("{not json")
    assert manifest.load(tmp_path / "manifest.json") == {"schema": manifest.SCHEMA, "models": {}}


def test_detector_goes_through_the_ladder_with_box_agreement(built):
    out, data, _ = built
    det = data["models"]["detector"]
    assert det["kind"] == "edge" and det["source"]["sha256"] == DETECTOR_SHA256
    fp32, int8 = det["engines"]["fp32"], det["engines"]["int8"]
    assert fp32["metric"] == "box_agreement" and fp32["accuracy"]["box_agreement"] == 1.0
    assert fp32["inputs"] == {"images": [1, 3, 416, 416]} and fp32["opset"] == 17  # upgraded from 11
    assert det["engines"]["fp16"]["accuracy"]["box_agreement"] >= 0.95
    assert int8["int8_target"] == "cpu" and 0.0 <= int8["accuracy"]["box_agreement"] <= 1.0
    # CPU placement: Convs quantized in and out, so ONNX Runtime fuses them into QLinearConv
    model = onnx.load(str(out / int8["file"]))
    made_by = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    fed_by_dq = [c for c in convs if made_by[c.input[0]].op_type == "DequantizeLinear"]
    assert len(fed_by_dq) > 0.8 * len(convs)
    readers = {i: n for n in model.graph.node for i in n.input}
    assert all(readers[c.output[0]].op_type == "QuantizeLinear" for c in fed_by_dq)
    if det["recommended"] == "int8":  # never a default that is slower than fp32 here
        assert int8["latency_ms_median"] < fp32["latency_ms_median"] and int8["status"] == "ok"


def test_slower_reduced_precision_is_not_recommended():
    fast = {"fp32": {"status": "ok", "latency_ms_median": 10.0}, "int8": {"status": "ok", "latency_ms_median": 6.0}}
    slow = {"fp32": {"status": "ok", "latency_ms_median": 10.0}, "int8": {"status": "ok", "latency_ms_median": 14.0}}
    assert manifest.recommend("edge", fast) == "int8" and manifest.recommend("edge", slow) == "fp32"
    slow["int8"]["tensorrt"] = {"file": "x.int8.engine"}  # TensorRT engines are not judged by ORT CPU time
    assert manifest.recommend("edge", slow) == "int8"
