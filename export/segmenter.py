"""The user's YOLOv8/11-seg ONNX: check it is one, and compare variants by their decoded masks.

We ship no segmenter (the weights' licence is the user's to accept), so there is no torch model
to compare with: FP16 and INT8 are judged against the user's FP32 file, by the IoU of the union
of instance masks that the edge's own decoder (``edge.segmenter.yolo.decode``) produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .errors import InvalidOnnxError
from .graph import load_checked, shapes
from .validate import Feed, Runner

OUTPUTS = ("output0", "output1")  # detections [1, 4+nc+32, N], prototypes [1, 32, S/4, S/4]


@dataclass(frozen=True)
class SegmenterGraph:
    model: onnx.ModelProto
    input_name: str
    input_hw: tuple[int | None, int | None]  # None where the export left a dim dynamic


def check(path: Path) -> SegmenterGraph:
    """Load a YOLO-seg export or raise InvalidOnnxError saying what is missing."""
    model = load_checked(path, what="--segmenter-onnx")
    inits = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    outs = shapes(model.graph.output)
    missing = [o for o in OUTPUTS if o not in outs]
    if missing:
        raise InvalidOnnxError(
            f"--segmenter-onnx {path} is not a YOLO-seg export: outputs {sorted(outs)} lack {missing} "
            f"(expected {list(OUTPUTS)} from `yolo export model=yolo11n-seg.pt format=onnx`)")
    if len(outs["output0"]) != 3 or len(outs["output1"]) != 4:
        raise InvalidOnnxError(f"--segmenter-onnx {path}: output0 must be rank 3 and output1 rank 4, got "
                               f"{outs['output0']} and {outs['output1']}")
    in_shapes = shapes(inputs)
    if len(inputs) != 1 or len(in_shapes[inputs[0].name]) != 4:
        raise InvalidOnnxError(f"--segmenter-onnx {path}: expected one [1, 3, H, W] image input, got {in_shapes}")
    dims = in_shapes[inputs[0].name]
    hw = tuple(d if isinstance(d, int) and d > 0 else None for d in dims[2:])
    return SegmenterGraph(model, inputs[0].name, (hw[0], hw[1]))


def union_mask(outputs: Sequence[np.ndarray], size: tuple[int, int], names: list[str]) -> np.ndarray:
    from edge.segmenter.yolo import decode

    out0, protos = outputs[0], outputs[1]
    found = decode(out0, protos, input_size=size[1], ratio=1.0, pad=(0, 0), image_hw=size, class_names=names)
    mask = np.zeros(size, bool)
    for inst in found:
        mask |= inst.mask
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mask_iou(reference: Runner, candidate: Runner, feeds: Sequence[Feed]) -> dict[str, float]:
    """Mean union-mask IoU of ``candidate`` vs ``reference`` over the feeds (both empty = 1)."""
    values, counts = [], []
    for f in feeds:
        ref, got = reference(f), candidate(f)
        size = next(iter(f.values())).shape[2:]
        names = [f"class{i}" for i in range(ref[0].shape[1] - 4 - ref[1].shape[1])]
        a, b = union_mask(ref, size, names), union_mask(got, size, names)
        values.append(iou(a, b))
        counts.append(int(a.sum()))
    return {"mask_iou": round(float(np.mean(values)), 6), "reference_mask_pixels": int(np.sum(counts))}
