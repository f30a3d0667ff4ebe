"""FP32 -> INT8 QDQ ONNX with ONNX Runtime static quantization, in the form TensorRT consumes.

QDQ format (TensorRT's explicit quantization reads QuantizeLinear/DequantizeLinear pairs),
symmetric activations and weights (TensorRT requires zero points of 0), per-channel weights,
MinMax calibration on real photos (deterministic, unlike entropy/percentile histograms).
``quant_pre_process`` runs first (shape inference + basic fusions), and the exclusion list is
computed on its output, because that is the graph whose node names ``quantize_static`` sees.
Excluded: everything after the last Conv on the way to the outputs: the encoder's
normalise/similarity/ArgMax (cosine scores of nearby codes differ by less than one INT8 step)
and a YOLO-seg head's box/score decoding (pixels and probabilities must not share a scale).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from .graph import name_nodes, tail_nodes

log = logging.getLogger(__name__)

QUANT_OPTIONS = {
    "ActivationSymmetric": True,  # zero point 0: TensorRT rejects asymmetric activation scales
    "WeightSymmetric": True,
}


class ListReader:
    """A CalibrationDataReader over a fixed list of feeds (plain class: ORT duck-types it)."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def excluded_nodes(model: onnx.ModelProto, exclude_outputs: Sequence[str]) -> list[str]:
    return tail_nodes(model, exclude_outputs) if exclude_outputs else []


def to_int8(fp32_path: Path, out_path: Path, feeds: Sequence[dict[str, np.ndarray]], *,
            exclude_tails_of: Sequence[str] = ()) -> list[str]:
    """Quantize ``fp32_path`` into ``out_path``; returns the node names left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="tc-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        named = Path(tmp) / "named.onnx"
        onnx.save(name_nodes(onnx.load(str(fp32_path))), str(named))
        quant_pre_process(str(named), str(pre), skip_symbolic_shape=False)
        model = name_nodes(onnx.load(str(pre)))
        onnx.save(model, str(pre))
        excluded = excluded_nodes(model, exclude_tails_of)
        quantize_static(
            str(pre), str(out_path), ListReader(feeds),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
            extra_options=dict(QUANT_OPTIONS),
        )
    return excluded
